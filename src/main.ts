import { ConfigError, loadConfig } from './config.js';
import { buildApp } from './http/app.js';
import { configureSharp } from './image/sharp-setup.js';
import { Metrics } from './metrics.js';
import { FolderSource } from './source/folder.js';

/**
 * Starts the server. Any configuration problem ends the process with exit code 1 and one
 * line on stderr, so an orchestrator shows exactly what is wrong and nothing starts half-set-up.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  configureSharp(config);
  const metrics = new Metrics();
  const source = await FolderSource.open(config.fileRoot, config.sourceRecheckMs);
  const app = buildApp({ config, source, metrics });
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  app.log.info({ port, host: config.host, fileRoot: config.fileRoot }, `listening on http://${config.host}:${port}`);
}

main().catch((error: unknown) => {
  const message = error instanceof ConfigError || error instanceof Error ? error.message : String(error);
  process.stderr.write(`iiif-elastic: ${message}\n`);
  process.exit(1);
});
