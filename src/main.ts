import { pino } from 'pino';
import { ConfigError, loadConfig } from './config.js';
import { buildApp } from './http/app.js';
import { Pyramids } from './image/pyramids.js';
import { configureSharp } from './image/sharp-setup.js';
import { Metrics } from './metrics.js';
import { openSource } from './source/open.js';

/**
 * Starts the server. Any configuration problem ends the process with exit code 1 and one
 * line on stderr, so an orchestrator shows exactly what is wrong and nothing starts half-set-up.
 */
async function main(): Promise<void> {
  const config = loadConfig();
  configureSharp(config);
  const metrics = new Metrics();
  // The source logs before and outside requests (cache degraded, S3 failing), on the same stream.
  const log = pino({ level: config.logLevel });
  const source = await openSource(config, metrics, log);
  const pyramids = config.pyramids.thresholdPixels > 0 ? await Pyramids.open(config.pyramids, metrics, log) : undefined;
  const app = buildApp({ config, source, pyramids, metrics });
  await app.listen({ port: config.port, host: config.host });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.port;
  const where = config.s3 ? { bucket: config.s3.bucket, prefix: config.s3.prefix } : { fileRoot: config.fileRoot };
  app.log.info({ port, host: config.host, source: config.source, ...where }, `listening on http://${config.host}:${port}`);
}

main().catch((error: unknown) => {
  const message = error instanceof ConfigError || error instanceof Error ? error.message : String(error);
  process.stderr.write(`iiif-elastic: ${message}\n`);
  process.exit(1);
});
