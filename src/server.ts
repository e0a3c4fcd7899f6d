import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { loadConfig, type Config } from './config.js';
import { ServerError } from './errors.js';
import { buildApp } from './http/app.js';
import { exitGracefullyOnSignals, Lifecycle } from './http/lifecycle.js';
import { buildMetricsApp } from './http/metrics-route.js';
import { createRuntime } from './runtime.js';

export interface RunningServer {
  app: FastifyInstance;
  /** The port really bound (differs from config.port when that is 0). */
  port: number;
  /** Set when IIIF_METRICS_PORT moved /metrics to its own listener. */
  metricsPort: number | undefined;
  /** Flip to draining to fail /health (what a stop signal does). */
  lifecycle: Lifecycle;
  close(): Promise<void>;
}

/**
 * Opens the source and starts listening: the IIIF app on PORT, and the metrics listener on
 * IIIF_METRICS_PORT when set (same HOST). Used by `npm start` and `iiif-elastic serve`, so both
 * start exactly the same server. If either listener cannot bind, nothing is left listening.
 */
export async function startServer(config: Config, options: { logger?: boolean } = {}): Promise<RunningServer> {
  // The source and the caches log before and outside requests (cache degraded, S3 failing).
  const runtime = await createRuntime(config, { log: pino({ level: options.logger === false ? 'silent' : config.logLevel }) });
  const lifecycle = new Lifecycle();
  const app = buildApp(runtime, { lifecycle, logger: options.logger ?? true });
  const metricsApp = config.metricsPort === undefined ? undefined : buildMetricsApp(runtime.metrics);
  const close = async () => {
    await Promise.all([app.close(), metricsApp?.close()]);
  };
  try {
    await app.listen({ port: config.port, host: config.host });
    if (metricsApp) await metricsApp.listen({ port: config.metricsPort, host: config.host });
  } catch (error) {
    await close();
    throw error;
  }
  return { app, port: boundPort(app), metricsPort: metricsApp && boundPort(metricsApp), lifecycle, close };
}

function boundPort(app: FastifyInstance): number {
  const address = app.server.address();
  if (typeof address !== 'object' || !address) throw new ServerError('SERVER_NOT_LISTENING', 'the server is not listening on a TCP port');
  return address.port;
}

/**
 * Reads the configuration from `env`, starts the server, drains it gracefully on a stop signal
 * and logs where it listens: the whole of `npm start`, and of `iiif-elastic serve` (which passes
 * its flags as environment variables).
 */
export async function serve(env: Record<string, string | undefined>): Promise<RunningServer> {
  const config = loadConfig(env);
  const running = await startServer(config);
  const { app, port, metricsPort, lifecycle } = running;
  // SIGTERM/SIGINT: fail /health, keep serving through the drain delay, then close and exit 0.
  exitGracefullyOnSignals(app, lifecycle, config);
  const where = config.s3 ? { bucket: config.s3.bucket, prefix: config.s3.prefix } : { fileRoot: config.fileRoot };
  app.log.info({ port, metricsPort, host: config.host, source: config.source, ...where }, `listening on http://${config.host}:${port}`);
  return running;
}
