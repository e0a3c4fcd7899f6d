/**
 * What the S3 benchmarks (bench:cold, bench:fleet) share: fresh server processes over the
 * throttled S3 stand-in (s3-store.ts), several of them behind HAProxy, a viewer session through
 * it, and the arithmetic on the proxy's counters.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoadBalancer } from '../scripts/cluster/haproxy.js';
import { startServerProcess, type ServerProcess } from '../scripts/cluster/server-process.js';
import { BUCKET, type Link, type S3Store, type Traffic } from './s3-store.js';
import { timedGet } from './probe.js';
import { viewerSession } from './viewer-session.js';

/** S3 as seen from EC2: 20 ms before the first byte of every object GET, then 90 MB/s per connection. */
export const S3_FROM_EC2: Link = { firstByteMs: 20, bytesPerSecond: 90e6 };
export const TILE = 256;
/** What a browser opens per host. */
export const SESSION_CONCURRENCY = 6;

export const round1 = (n: number): number => Math.round(n * 10) / 10;
export const mb = (bytes: number): number => round1(bytes / 1e6);
export const median = (values: number[]): number => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
/** The value below which `fraction` of `values` lie (nearest rank). */
export const percentile = (values: number[], fraction: number): number => [...values].sort((a, b) => a - b)[Math.max(0, Math.ceil(values.length * fraction) - 1)]!;

export function minus(after: Traffic, before: Traffic): Traffic {
  return { requests: after.requests - before.requests, gets: after.gets - before.gets, rangeGets: after.rangeGets - before.rangeGets, bytes: after.bytes - before.bytes };
}

function serverEnv(store: S3Store, cacheDir: string, pyramidDir: string): Record<string, string> {
  return {
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    AWS_REGION: 'us-east-1',
    IIIF_SOURCE: 's3',
    IIIF_S3_BUCKET: BUCKET,
    IIIF_S3_ENDPOINT: store.endpoint,
    IIIF_CACHE_DIR: cacheDir,
    IIIF_PYRAMID_DIR: pyramidDir,
    IIIF_ACCESS_LOG: 'false',
  };
}

export interface FreshServer {
  server: ServerProcess;
  /** When it was spawned (performance.now()). */
  started: number;
  /** Kills it and removes its cache folders. */
  cleanUp(): Promise<void>;
}

/** A fresh server process over the S3 stand-in, with empty cache folders of its own, plus `env`. */
export async function freshServer(store: S3Store, env: Record<string, string> = {}): Promise<FreshServer> {
  const folder = await mkdtemp(join(tmpdir(), 'iiif-s3-bench-'));
  const started = performance.now();
  const server = await startServerProcess({ ...serverEnv(store, join(folder, 'cache'), join(folder, 'pyramids')), ...env });
  return {
    server,
    started,
    cleanUp: async () => {
      server.child.kill('SIGKILL');
      await server.exited;
      await rm(folder, { recursive: true, force: true });
    },
  };
}

/** Fresh servers behind HAProxy (round robin), each UP before it resolves; replicas are named r0, r1, … */
export class Fleet {
  private constructor(
    readonly servers: FreshServer[],
    readonly balancer: LoadBalancer,
    private readonly store: S3Store,
    private readonly env: Record<string, string>,
  ) {}

  static async start(store: S3Store, replicas: number, env: Record<string, string> = {}): Promise<Fleet> {
    const servers = await Promise.all(Array.from({ length: replicas }, () => freshServer(store, env)));
    const balancer = await LoadBalancer.start(servers.map(({ server }, i) => ({ name: `r${i}`, port: server.port })));
    const fleet = new Fleet(servers, balancer, store, env);
    for (let i = 0; i < replicas; i++) await balancer.waitForStatus(`r${i}`, 'UP');
    return fleet;
  }

  get url(): string {
    return this.balancer.url;
  }

  /** A fresh server joining the running fleet (no reload); resolves once HAProxy has it UP. */
  async join(): Promise<{ name: string; server: FreshServer }> {
    const server = await freshServer(this.store, this.env);
    const name = `r${this.servers.length}`;
    this.servers.push(server);
    await this.balancer.add({ name, port: server.server.port });
    return { name, server };
  }

  /** One counter's total across the fleet's processes, read from each one's /metrics (labels as given must all match). */
  async counterTotal(name: string, labels: Record<string, string> = {}): Promise<number[]> {
    return Promise.all(
      this.servers.map(async ({ server }) => {
        const text = await (await fetch(`http://127.0.0.1:${server.port}/metrics`)).text();
        let sum = 0;
        for (const line of text.split('\n')) {
          const match = /^(\w+)(\{[^}]*\})? ([\d.e+-]+)$/.exec(line);
          if (!match || match[1] !== name) continue;
          if (Object.entries(labels).every(([key, value]) => (match[2] ?? '').includes(`${key}="${value}"`))) sum += Number(match[3]);
        }
        return sum;
      }),
    );
  }

  async stop(): Promise<void> {
    await this.balancer.stop();
    await Promise.all(this.servers.map((s) => s.cleanUp()));
  }
}

export interface Timed {
  path: string;
  status: number;
  ms: number;
  /** The replica HAProxy sent it to (its x-served-by header), when there is one. */
  servedBy?: string;
}

export { timedGet };

/** `paths` below `base`, `concurrency` at a time in order, each timed. */
export async function fetchAll(base: string, paths: string[], concurrency = SESSION_CONCURRENCY): Promise<Timed[]> {
  const timed: Timed[] = [];
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < paths.length) {
        const path = paths[next++]!;
        timed.push({ path, ...(await timedGet(`${base}/${path}`)) });
      }
    }),
  );
  return timed;
}

/**
 * One viewer opening an image: info.json first, then `tiles` tiles as OpenSeadragon asks for
 * them (viewer-session.ts), SESSION_CONCURRENCY at a time. Paths are relative to `base`
 * (the image's IIIF base URI).
 */
export async function viewerRun(base: string, size: { width: number; height: number }, tiles: number): Promise<Timed[]> {
  const info = await fetchAll(base, ['info.json'], 1);
  return [...info, ...(await fetchAll(base, viewerSession({ ...size, tileSize: TILE, viewport: { width: 1280, height: 800 }, tiles })))];
}
