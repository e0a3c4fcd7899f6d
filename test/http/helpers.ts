import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';
import { createRuntime } from '../../src/runtime.js';

/**
 * A real app over a fixture folder, configured through the same environment parsing and wired
 * as src/main.ts does. Each app gets its own pyramid folder unless IIIF_PYRAMID_DIR is given.
 */
export async function appFor(root: string, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const pyramidDir = env.IIIF_PYRAMID_DIR ?? (await mkdtemp(join(tmpdir(), 'iiif-pyramids-')));
  const config = loadConfig({ IIIF_FILE_ROOT: root, IIIF_PYRAMID_DIR: pyramidDir, ...env });
  const app = buildApp(await createRuntime(config), { logger: false });
  await app.ready();
  return app;
}
