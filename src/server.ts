import type { FastifyInstance } from 'fastify';
import { loadConfig, type Config } from './config.js';
import { buildApp } from './http/app.js';
import { buildMetricsApp } from './http/metrics-route.js';
import { Metrics } from './metrics.js';
import { FolderSource } from './source/folder.js';
import type { ImageSource } from './source/source.js';

/** The image source the configuration asks for; fails with a message naming the setting. */
export function openSource(config: Config): Promise<ImageSource> {
  return FolderSource.open(config.fileRoot);
}

export interface RunningServer {
  app: FastifyInstance;
  /** The port really bound (differs from config.port when that is 0). */
  port: number;
  /** Set when IIIF_METRICS_PORT moved /metrics to its own listener. */
  metricsPort: number | undefined;
  close(): Promise<void>;
}

/**
 * Opens the source and starts listening: the IIIF app on PORT, and the metrics listener on
 * IIIF_METRICS_PORT when set (same HOST). Used by `npm start` and `iiif-elastic serve`, so both
 * start exactly the same server. If either listener cannot bind, nothing is left listening.
 */
export async function startServer(config: Config, options: { logger?: boolean } = {}): Promise<RunningServer> {
  const metrics = new Metrics();
  const source = await openSource(config);
  const app = buildApp({ config, source, metrics, logger: options.logger ?? true });
  const metricsApp = config.metricsPort === undefined ? undefined : buildMetricsApp(metrics);
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
  return { app, port: boundPort(app), metricsPort: metricsApp && boundPort(metricsApp), close };
}

function boundPort(app: FastifyInstance): number {
  const address = app.server.address();
  if (typeof address !== 'object' || !address) throw new Error('the server is not listening on a TCP port');
  return address.port;
}

/**
 * Reads the configuration from `env`, starts the server and logs where it listens: the whole of
 * `npm start`, and of `iiif-elastic serve` (which passes its flags as environment variables).
 */
export async function serve(env: Record<string, string | undefined>): Promise<RunningServer> {
  const config = loadConfig(env);
  const running = await startServer(config);
  const { app, port, metricsPort } = running;
  app.log.info({ port, metricsPort, host: config.host, fileRoot: config.fileRoot }, `listening on http://${config.host}:${port}`);
  return running;
}
