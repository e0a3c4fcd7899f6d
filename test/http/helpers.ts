import type { FastifyInstance } from 'fastify';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';
import { FolderSource } from '../../src/source/folder.js';

/** A real app over a fixture folder, configured through the same environment parsing as production. */
export async function appFor(root: string, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const config = loadConfig({ IIIF_FILE_ROOT: root, ...env });
  const app = buildApp({ config, source: await FolderSource.open(root, config.sourceRecheckMs), logger: false });
  await app.ready();
  return app;
}
