import { loadConfig } from './config.js';
import { startServer } from './server.js';

/**
 * Starts the server. Any configuration problem ends the process with exit code 1 and one
 * line on stderr, so an orchestrator shows exactly what is wrong and nothing starts half-set-up.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  const { app, port, metricsPort } = await startServer(config);
  app.log.info({ port, metricsPort, host: config.host, fileRoot: config.fileRoot }, `listening on http://${config.host}:${port}`);
}

main().catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`iiif-elastic: ${message}\n`);
  process.exit(1);
});
