import { randomUUID } from 'node:crypto';
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { loadConfig, type Config } from './config.js';
import { ServerError } from './errors.js';
import { registerAdminRoutes } from './http/admin-routes.js';
import { buildApp } from './http/app.js';
import { exitGracefullyOnSignals, Lifecycle } from './http/lifecycle.js';
import { buildMetricsApp } from './http/metrics-route.js';
import { serverTimeouts } from './http/timeouts.js';
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
 * The disk caches' folders must take a file at start. A container whose cache volume it cannot
 * write would otherwise serve every image uncached while /health stays green, so the server
 * refuses to start instead: the orchestrator sees the task fail (on ECS the deployment circuit
 * breaker rolls back). Write failures later on (a full disk) still degrade, never crash.
 */
async function checkCacheFolders(config: Config): Promise<void> {
  const folders: Array<[string, string]> = [];
  if (config.source === 's3') folders.push(['IIIF_CACHE_DIR', config.cache.dir]);
  if (config.pyramids.thresholdPixels > 0) folders.push(['IIIF_PYRAMID_DIR', config.pyramids.dir]);
  for (const [variable, dir] of folders) {
    // A leftover probe (a crash right here) is deleted by the cache's own start-up scan.
    const probe = join(dir, `.tmp-probe-${randomUUID()}`);
    try {
      await mkdir(dir, { recursive: true });
      await writeFile(probe, '');
      await unlink(probe);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new ServerError(
        'CACHE_FOLDER_UNWRITABLE',
        `${variable} ${dir} cannot be written (${reason}): give the server a writable folder there (a volume owned by the user it runs as)`,
        { cause: error },
      );
    }
  }
}

/**
 * Opens the source and starts listening: the IIIF app on PORT, and the metrics listener on
 * IIIF_METRICS_PORT when set (same HOST), which then also carries the operator routes. Used by
 * `npm start` and `iiif-elastic serve`, so both start exactly the same server. If either
 * listener cannot bind, or a cache folder cannot be written, nothing is left listening.
 */
export async function startServer(config: Config, options: { logger?: boolean } = {}): Promise<RunningServer> {
  await checkCacheFolders(config);
  // The source and the caches log before and outside requests (cache degraded, S3 failing).
  const runtime = await createRuntime(config, { log: pino({ level: options.logger === false ? 'silent' : config.logLevel }) });
  const lifecycle = new Lifecycle();
  const app = buildApp(runtime, { lifecycle, logger: options.logger ?? true });
  const metricsApp = config.metricsPort === undefined ? undefined : buildMetricsApp(runtime.metrics, serverTimeouts(config));
  // The operator routes go with /metrics to the private listener, never the public port.
  if (metricsApp && config.adminToken) registerAdminRoutes(metricsApp, runtime.images, config.adminToken);
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
