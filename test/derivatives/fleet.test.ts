import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DerivativeStoreError } from '../../src/derivatives/errors.js';
import type { WaitProgress } from '../../src/derivatives/fleet.js';
import { openDerivatives, type Derivatives } from '../../src/derivatives/open.js';
import type { DerivativeFiles } from '../../src/derivatives/store.js';
import { Metrics } from '../../src/metrics.js';
import { projectRoot } from '../../src/paths.js';
import { expectQuadrantColours } from '../fixtures.js';
import { BUCKET, S3Store } from '../source/s3-store.js';
import { container, etagOf, fleetConfig, keysUnder, makePyramid, objectBytes, PREFIX, type ContainerOptions } from './fleet-parts.js';

let store: S3Store;
let files: DerivativeFiles;
let other: DerivativeFiles;
let pyramidBytes: Buffer;
beforeAll(async () => {
  store = await S3Store.start();
  files = await makePyramid();
  other = await makePyramid(1000, 600);
  pyramidBytes = await readFile(files.pyramidPath);
});
afterAll(() => store.close());

const opened: Derivatives[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  store.fault = undefined;
  for (const parts of opened.splice(0)) parts.client.destroy();
  for (const child of children.splice(0)) if (child.exitCode === null) child.kill('SIGKILL');
});

function open(owner: string, options: ContainerOptions = {}): Derivatives {
  const parts = container(store, owner, { waitMs: 20_000, ...options });
  opened.push(parts);
  return parts;
}

const dist = (path: string) => pathToFileURL(join(projectRoot(), 'dist', 'src', path)).href;

/** A conversion standing in for the real one (it hands over `files`), counting how often it ran. */
function countedBuild(): { build: () => Promise<DerivativeFiles>; builds: () => number } {
  let builds = 0;
  return {
    build: async () => {
      builds++;
      return files;
    },
    builds: () => builds,
  };
}

/**
 * Another container, as a process of its own (the compiled server code; npm test builds first):
 * it converts one source version through the fleet, with `files` standing for its conversion.
 */
function converterProcess(job: { owner: string; sourceKey: string; etag: string; leaseSeconds: number; files: DerivativeFiles }): ChildProcess {
  const script = `
    import { loadConfig } from '${dist('config.js')}';
    import { openDerivatives } from '${dist('derivatives/open.js')}';
    import { Metrics } from '${dist('metrics.js')}';
    const job = JSON.parse(process.env.JOB);
    const config = loadConfig(process.env);
    const parts = openDerivatives({ ...config, derivatives: { ...config.derivatives, leaseSeconds: job.leaseSeconds } }, new Metrics(), { owner: job.owner, settleMs: 400 });
    await parts.fleet.obtain(job.sourceKey, job.etag, async () => job.files);
  `;
  const env = {
    PATH: process.env.PATH,
    AWS_ACCESS_KEY_ID: 'S3RVER',
    AWS_SECRET_ACCESS_KEY: 'S3RVER',
    IIIF_SOURCE: 's3',
    IIIF_S3_BUCKET: BUCKET,
    IIIF_S3_ENDPOINT: store.endpoint,
    IIIF_S3_REGION: 'us-east-1',
    IIIF_DERIVATIVE_PREFIX: PREFIX,
    JOB: JSON.stringify(job),
  };
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { env, stdio: 'ignore' });
  children.push(child);
  return child;
}

describe.each([
  ['a store that ignores conditional writes (s3rver)', false],
  ['a store that honours them (strict proxy)', true],
])('one conversion per source version across the fleet, on %s', (_name, strict) => {
  beforeAll(() => {
    store.conditionalWrites = strict;
  });

  it('four containers asking at once: exactly one converts, and all four get the same derivative', async () => {
    const sourceKey = `race/${strict}.jpg`;
    const fleet = ['a', 'b', 'c', 'd'].map((name) => open(`container-${name}`, { settleMs: 1000 }));
    const builders: string[] = [];
    const progress: WaitProgress[] = [];
    const results = await Promise.all(
      fleet.map((parts) =>
        parts.fleet.obtain(
          sourceKey,
          'v1',
          async () => {
            builders.push(parts.leases.owner);
            return makePyramid();
          },
          { onProgress: (step) => progress.push(step) },
        ),
      ),
    );
    expect(builders).toHaveLength(1);
    expect(results.filter((result) => result.derivative && result.built)).toHaveLength(1);
    const published = results[0]!.derivative!;
    for (const result of results) expect(result.derivative).toEqual(published);
    // The others waited for the converter, and could see who it was.
    expect(progress.length).toBeGreaterThan(0);
    expect(progress.filter((step) => step.holder).every((step) => step.holder!.owner === builders[0])).toBe(true);
    await expectQuadrantColours(await sharp(await objectBytes(store, published.pyramidKey)).png().toBuffer());
    expect(await keysUnder(store, `${PREFIX}${sourceKey}/`)).toEqual([published.pyramidKey.replace(/pyramid\.tif$/, 'complete'), published.infoKey, published.pyramidKey]);
  });

  it('a converter killed mid-upload leaves nothing complete; its lease expires and another container takes over', async () => {
    const sourceKey = `killed/${strict}.jpg`;
    const b = open('container-b');
    const keys = b.store.keys(sourceKey, 'v1');
    // The upload reaches the store half-way, then the container dies.
    store.fault = (r) => (r.method === 'PUT' && r.key === keys.pyramid ? { stallBodyAfterBytes: Math.floor(pyramidBytes.length / 2) } : undefined);
    const doomed = converterProcess({ owner: 'container-doomed', sourceKey, etag: 'v1', leaseSeconds: 2, files });
    while (!(await keysUnder(store, keys.dir)).includes(keys.pyramid)) await sleep(20);
    doomed.kill('SIGKILL');
    await once(doomed, 'exit');
    store.fault = undefined;

    // s3rver writes in place, so it holds the half it received: a half-written pyramid, never served.
    expect(await keysUnder(store, keys.dir)).toEqual([keys.lease, keys.pyramid]);
    expect((await objectBytes(store, keys.pyramid)).length).toBeLessThan(pyramidBytes.length);
    expect(await b.store.find(sourceKey, 'v1')).toBeUndefined();
    expect(await b.leases.current(sourceKey, 'v1')).toMatchObject({ owner: 'container-doomed', phase: 'uploading' });

    const progress: WaitProgress[] = [];
    const { build, builds } = countedBuild();
    const result = await b.fleet.obtain(sourceKey, 'v1', build, { onProgress: (step) => progress.push(step) });
    expect(result).toMatchObject({ built: true });
    expect(builds()).toBe(1);
    expect(progress.some((step) => step.holder?.owner === 'container-doomed' && step.holder.phase === 'uploading')).toBe(true);
    expect((await objectBytes(store, keys.pyramid)).equals(pyramidBytes)).toBe(true);
    expect(await keysUnder(store, keys.dir)).toEqual([keys.complete, keys.info, keys.pyramid]);
  });

  it('a converter whose lease was taken over while it converted publishes nothing and takes the new derivative', async () => {
    const sourceKey = `overtaken/${strict}.jpg`;
    const a = open('container-a', { leaseSeconds: 0.5 });
    const b = open('container-b');
    let taken: Awaited<ReturnType<typeof b.fleet.obtain>> | undefined;
    const result = await a.fleet.obtain(sourceKey, 'v1', async () => {
      // A's conversion outlasts its lease: B takes over and publishes meanwhile.
      while ((await b.leases.current(sourceKey, 'v1'))!.expiresAt > Date.now()) await sleep(50);
      taken = await b.fleet.obtain(sourceKey, 'v1', async () => other);
      return files;
    });
    expect(taken).toMatchObject({ built: true });
    expect(result).toEqual({ derivative: taken!.derivative, built: false });
    expect((await objectBytes(store, result.derivative!.pyramidKey)).equals(await readFile(other.pyramidPath))).toBe(true);
  });

  it('a waiter gives up after the bounded wait, with progress, so the request is served from the source', async () => {
    const sourceKey = `slow/${strict}.jpg`;
    const holder = open('container-slow');
    expect((await holder.leases.acquire(sourceKey, 'v1')).lease).toBeDefined();
    const metrics = new Metrics();
    const waiter = openDerivatives(fleetConfig(store, { waitMs: 500 }), metrics, { owner: 'container-w', settleMs: 400 })!;
    opened.push(waiter);
    const progress: WaitProgress[] = [];
    const { build, builds } = countedBuild();
    const result = await waiter.fleet.obtain(sourceKey, 'v1', build, { onProgress: (step) => progress.push(step) });
    expect(result).toEqual({ derivative: undefined, holder: expect.objectContaining({ owner: 'container-slow', phase: 'converting' }) });
    expect(builds()).toBe(0);
    expect(progress.length).toBeGreaterThanOrEqual(2);
    expect(progress.every((step, i) => i === 0 || step.waitedMs > progress[i - 1]!.waitedMs)).toBe(true);
    expect(await metrics.registry.metrics()).toContain('iiif_derivative_obtained_total{result="timeout"} 1');
  });

  it('S3 refusing every write: an error to fall back on, nothing converted, nothing stored', async () => {
    const sourceKey = `refused/${strict}.jpg`;
    const a = open('container-a');
    store.fault = (r) => (r.method === 'PUT' ? { status: 403, code: 'AccessDenied' } : undefined);
    const { build, builds } = countedBuild();
    await expect(a.fleet.obtain(sourceKey, 'v1', build)).rejects.toBeInstanceOf(DerivativeStoreError);
    expect(builds()).toBe(0);
    expect(await keysUnder(store, `${PREFIX}${sourceKey}/`)).toEqual([]);
  });

  it('S3 failing the pyramid upload: an error to fall back on, the lease given back, nothing left; the next attempt publishes', async () => {
    const sourceKey = `failing/${strict}.jpg`;
    const a = open('container-a');
    const keys = a.store.keys(sourceKey, 'v1');
    store.fault = (r) => (r.method === 'PUT' && r.key === keys.pyramid ? { status: 500, code: 'InternalError' } : undefined);
    const { build, builds } = countedBuild();
    await expect(a.fleet.obtain(sourceKey, 'v1', build)).rejects.toBeInstanceOf(DerivativeStoreError);
    expect(builds()).toBe(1);
    expect(await keysUnder(store, keys.dir)).toEqual([]);
    store.fault = undefined;
    expect(await open('container-b').fleet.obtain(sourceKey, 'v1', build)).toMatchObject({ built: true });
    expect(builds()).toBe(2);
  });

  it('a new source ETag makes a new derivative; the old one is not used, and prune finds and removes it', async () => {
    const sourceKey = `changing/${strict}.jpg`;
    const a = open('container-a');
    await store.put(sourceKey, Buffer.from('first version'));
    const first = await etagOf(store, sourceKey);
    const old = await a.fleet.obtain(sourceKey, first, async () => files);
    await store.put(sourceKey, Buffer.from('second version'));
    const second = await etagOf(store, sourceKey);
    const fresh = await a.fleet.obtain(sourceKey, second, async () => other);
    expect(fresh).toMatchObject({ built: true, derivative: { etag: second } });
    expect(fresh.derivative!.pyramidKey).not.toBe(old.derivative!.pyramidKey);
    const report = await a.store.prune({ sourcePrefix: 'changing/', staleAfterMs: 60_000 });
    expect(report.pruned.map(({ version, reason }) => [version.dir, reason])).toEqual([[a.store.keys(sourceKey, first).dir, 'source-changed']]);
    expect(await a.store.find(sourceKey, first)).toBeUndefined();
    expect(await a.store.find(sourceKey, second)).toEqual(fresh.derivative);
  });
});
