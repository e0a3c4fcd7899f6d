import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';
import { Pyramids } from '../../src/image/pyramid/store.js';
import { Metrics } from '../../src/metrics.js';
import { FolderSource } from '../../src/source/folder.js';

const quiet = { warn: () => undefined, info: () => undefined };

/**
 * A real app over a fixture folder, configured through the same environment parsing and wired
 * as src/main.ts does. Each app gets its own pyramid folder unless IIIF_PYRAMID_DIR is given.
 */
export async function appFor(root: string, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const pyramidDir = env.IIIF_PYRAMID_DIR ?? (await mkdtemp(join(tmpdir(), 'iiif-pyramids-')));
  const config = loadConfig({ IIIF_FILE_ROOT: root, IIIF_PYRAMID_DIR: pyramidDir, ...env });
  const metrics = new Metrics();
  const pyramids = config.pyramids.thresholdPixels > 0 ? await Pyramids.open(config.pyramids, metrics, quiet) : undefined;
  const app = buildApp({ config, source: await FolderSource.open(root, config.sourceRecheckMs), pyramids, metrics, logger: false });
  await app.ready();
  return app;
}
