import { ConfigError, loadConfig } from './config.js';
import { buildApp } from './http/app.js';
import { exitGracefullyOnSignals, Lifecycle } from './http/lifecycle.js';
import { Metrics } from './metrics.js';
import { FolderSource } from './source/folder.js';

/**
 * Starts the server. Any configuration problem ends the process with exit code 1 and one
 * line on stderr, so an orchestrator shows exactly what is wrong and nothing starts half-set-up.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const metrics = new Metrics();
  const source = await FolderSource.open(config.fileRoot);
  const lifecycle = new Lifecycle();
  const app = buildApp({ config, source, metrics, lifecycle });
  await app.listen({ port: config.port, host: config.host });
  exitGracefullyOnSignals(app, lifecycle, config);
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  app.log.info({ port, host: config.host, fileRoot: config.fileRoot }, `listening on http://${config.host}:${port}`);
}

main().catch((error: unknown) => {
  const message = error instanceof ConfigError || error instanceof Error ? error.message : String(error);
  process.stderr.write(`iiif-elastic: ${message}\n`);
  process.exit(1);
});
