import { randomUUID } from 'node:crypto';
import { mkdir, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { loadConfig, type Config } from './config.js';
import { buildApp } from './http/app.js';
import { exitGracefullyOnSignals, Lifecycle } from './http/lifecycle.js';
import { buildMetricsApp } from './http/metrics-route.js';
import { Images } from './image/images.js';
import { Pyramids } from './image/pyramids.js';
import { configureSharp } from './image/sharp-setup.js';
import type { Log } from './cache/disk-cache.js';
import { Metrics } from './metrics.js';
import { openSource } from './source/open.js';
import type { ImageSource } from './source/source.js';

/** Where images come from and where their pyramids go: the same for the server and the CLI. */
export async function openStores(config: Config, metrics: Metrics, log: Log): Promise<{ source: ImageSource; pyramids: Pyramids | undefined }> {
  const source = await openSource(config, metrics, log);
  const pyramids = config.pyramids.thresholdPixels > 0 ? await Pyramids.open(config.pyramids, metrics, log) : undefined;
  return { source, pyramids };
}

/**
 * The image pipeline without a server, for command-line tools: same source, pyramids and
 * settings as `serve`, nothing logged (the commands print their own one-line results).
 */
export async function openPipeline(config: Config): Promise<{ images: Images; source: ImageSource; pyramids: Pyramids | undefined }> {
  const metrics = new Metrics();
  const { source, pyramids } = await openStores(config, metrics, { warn: () => undefined, info: () => undefined });
  return { images: new Images(source, config, metrics, pyramids), source, pyramids };
}

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
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      throw new Error(`${variable} ${dir} cannot be written (${code}): give the server a writable folder there (a volume owned by the user it runs as)`);
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
  configureSharp(config);
  await checkCacheFolders(config);
  const metrics = new Metrics();
  // The source and the caches log before and outside requests (cache degraded, S3 failing).
  const log = pino({ level: options.logger === false ? 'silent' : config.logLevel });
  const { source, pyramids } = await openStores(config, metrics, log);
  const lifecycle = new Lifecycle();
  const metricsApp = config.metricsPort === undefined ? undefined : buildMetricsApp(metrics);
  const app = buildApp({ config, source, pyramids, metrics, lifecycle, logger: options.logger ?? true, operationsApp: metricsApp });
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
  if (typeof address !== 'object' || !address) throw new Error('the server is not listening on a TCP port');
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
