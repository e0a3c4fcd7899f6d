import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterEach } from 'vitest';
import type { Log } from '../../src/cache/disk-cache.js';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';
import { createRuntime } from '../../src/runtime.js';
import type { ImageSource } from '../../src/source/source.js';
import { BUCKET, type S3Store } from './s3-store.js';

export interface LogLine {
  level: 'warn' | 'info';
  message: string;
}

export interface S3App {
  app: FastifyInstance;
  source: ImageSource;
  logs: LogLine[];
  /** One sample's value from /metrics, 0 when absent. */
  metric(line: string): Promise<number>;
}

/** The real app over the S3 source, configured through the same environment parsing as production. */
export async function s3App(store: S3Store, cacheDir: string, env: Record<string, string> = {}): Promise<S3App> {
  const config = loadConfig({
    IIIF_SOURCE: 's3',
    IIIF_S3_BUCKET: BUCKET,
    IIIF_S3_ENDPOINT: store.endpoint,
    IIIF_S3_REGION: 'us-east-1',
    IIIF_CACHE_DIR: cacheDir,
    ...env,
  });
  const logs: LogLine[] = [];
  const log: Log = {
    warn: (_details, message) => logs.push({ level: 'warn', message }),
    info: (_details, message) => logs.push({ level: 'info', message }),
  };
  const runtime = await createRuntime(config, { log });
  const { source, metrics } = runtime;
  const app = buildApp(runtime, { logger: false });
  await app.ready();
  const metric = async (line: string) => {
    const text = await metrics.registry.metrics();
    const found = text.split('\n').find((l) => l.startsWith(`${line} `));
    return found ? Number(found.slice(line.length + 1)) : 0;
  };
  return { app, source, logs, metric };
}

/**
 * Opens apps over a test file's S3 stand-in, each with a cache folder of its own unless one is
 * given; after every test they are closed and the stand-in's faults cleared.
 */
export function s3AppOpener(store: () => S3Store): (env?: Record<string, string>, cacheDir?: string) => Promise<S3App & { cacheDir: string }> {
  const apps: S3App[] = [];
  afterEach(async () => {
    store().fault = undefined;
    await Promise.all(apps.splice(0).map((a) => a.app.close()));
  });
  return async (env = {}, cacheDir) => {
    const dir = cacheDir ?? (await mkdtemp(join(tmpdir(), 'iiif-cache-')));
    const app = await s3App(store(), dir, env);
    apps.push(app);
    return { ...app, cacheDir: dir };
  };
}
