import { randomBytes } from 'node:crypto';
import { mkdtemp, readdir, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { parseImageRequest } from '../../src/iiif/parse.js';
import { Images } from '../../src/image/images.js';
import { Metrics } from '../../src/metrics.js';
import { BLUE, GREEN, near, pixel, quadrants, RED, YELLOW } from '../fixtures.js';
import { s3AppOpener, type S3App } from './s3-app.js';
import { S3Store } from './s3-store.js';

let store: S3Store;
let chart: Buffer;
let chartJpeg: Buffer;
beforeAll(async () => {
  store = await S3Store.start();
  chart = await quadrants();
  chartJpeg = await sharp(chart).jpeg({ quality: 95 }).toBuffer();
  await store.put('chart.png', chart);
  await store.put('deep/dir/chart.png', chart);
  await store.put('pyramid.tif', await sharp(chart).resize(1024, 512, { fit: 'fill' })
    .tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg', quality: 95 }).toBuffer());
  await store.put('corrupt.jpg', Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(4096, 0x5a)]));
});
afterAll(() => store.close());

const open = s3AppOpener(() => store);

/** What the cache folder really occupies: allocated blocks of every file in it, at any depth. */
async function bytesOnDisk(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).blocks * 512;
  }
  return total;
}

/** GETs of whole objects (no Range), of one key or of all. */
const wholeGets = (key?: string) => store.requests.filter((r) => r.method === 'GET' && r.key !== '' && !r.range && (key === undefined || r.key === key)).length;

/** An incompressible PNG of about width × width × 3 bytes. */
function noise(width: number): Promise<Buffer> {
  return sharp(randomBytes(width * width * 3), { raw: { width, height: width, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
}

const tile = (id: string) => `/iiif/3/${encodeURIComponent(id)}/0,0,200,100/100,/0/default.png`;

async function expectChart(s3: S3App, id = 'chart.png'): Promise<void> {
  const response = await s3.app.inject(`/iiif/3/${encodeURIComponent(id)}/full/max/0/default.png`);
  expect(response.statusCode).toBe(200);
  expect(near(await pixel(response.rawPayload, 10, 10), RED)).toBe(true);
  expect(near(await pixel(response.rawPayload, 390, 190), YELLOW)).toBe(true);
}

describe('S3 source: serving', () => {
  it('serves full images and tiles with the right pixels, identifiers with slashes included', async () => {
    const s3 = await open();
    await expectChart(s3);
    await expectChart(s3, 'deep/dir/chart.png');
    const info = await s3.app.inject('/iiif/3/pyramid.tif/info.json');
    expect(info.statusCode).toBe(200);
    expect(info.json()).toMatchObject({ width: 1024, height: 512 });
    const corner = await s3.app.inject('/iiif/3/pyramid.tif/512,256,512,256/256,/0/default.png');
    expect(corner.statusCode).toBe(200);
    expect(near(await pixel(corner.rawPayload, 128, 64), YELLOW)).toBe(true);
    expect(near(await pixel((await s3.app.inject('/iiif/3/pyramid.tif/0,256,512,256/256,/0/default.png')).rawPayload, 128, 64), BLUE)).toBe(true);
    expect(near(await pixel((await s3.app.inject('/iiif/3/pyramid.tif/512,0,512,256/256,/0/default.png')).rawPayload, 128, 64), GREEN)).toBe(true);
  });

  it('maps identifiers to keys under IIIF_S3_PREFIX and lists them, bounded', async () => {
    await store.put('collection/a.png', chart);
    await store.put('collection/b.png', chart);
    await store.put('collection/c.png', chart);
    const s3 = await open({ IIIF_S3_PREFIX: 'collection/' });
    await expectChart(s3, 'a.png');
    expect(store.gets('collection/a.png')).toBe(1);
    expect((await s3.app.inject(tile('chart.png'))).statusCode).toBe(404);
    expect(await s3.source.list!(10)).toEqual(['a.png', 'b.png', 'c.png']);
    expect(await s3.source.list!(2)).toEqual(['a.png', 'b.png']);
  });

  it('makes exactly one GET for 50 concurrent cold requests of a small image, and all 50 get the image', async () => {
    const s3 = await open();
    await store.put('burst.png', chart);
    const before = store.gets('burst.png');
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => s3.app.inject(i % 2 ? tile('burst.png') : '/iiif/3/burst.png/info.json')),
    );
    expect(responses.map((r) => r.statusCode)).toEqual(Array(50).fill(200));
    // The object is smaller than a block: its first block is the whole of it.
    expect(store.gets('burst.png') - before).toBe(1);
    expect(await s3.metric('iiif_source_fetch_total{result="ok"}')).toBe(1);
    expect(await s3.metric('iiif_source_cache_misses_total')).toBeGreaterThanOrEqual(1);
    // Warm now: another rendering reads the cached copy without S3 traffic.
    const hits = await s3.metric('iiif_source_cache_hits_total');
    expect((await s3.app.inject('/iiif/3/burst.png/full/50,/0/default.png')).statusCode).toBe(200);
    expect(store.gets('burst.png') - before).toBe(1);
    expect(await s3.metric('iiif_source_cache_hits_total')).toBeGreaterThan(hits);
  });

  it('answers 422 for corrupt bytes in S3, and keeps serving other images', async () => {
    const s3 = await open();
    expect((await s3.app.inject(tile('corrupt.jpg'))).statusCode).toBe(422);
    await expectChart(s3);
  });
});

describe('S3 source: disk cache', () => {
  it('keeps the folder under IIIF_CACHE_MAX_BYTES by evicting the least recently used', async () => {
    const ids = ['n0.png', 'n1.png', 'n2.png', 'n3.png', 'n4.png', 'n5.png'];
    for (const id of ids) await store.put(id, await noise(300)); // ~270 kB each, ~1.6 MB in all
    const bound = 1024 * 1024;
    const s3 = await open({ IIIF_CACHE_MAX_BYTES: String(bound) });
    const before = wholeGets();
    for (const id of ids) {
      expect((await s3.app.inject(tile(id))).statusCode).toBe(200);
      expect(await bytesOnDisk(s3.cacheDir)).toBeLessThanOrEqual(bound);
    }
    // PNG is decoded whole: each fetched whole once (after a ranged GET of its first block, which says its version).
    expect(wholeGets() - before).toBe(6);
    expect(await s3.metric('iiif_source_cache_evictions_total')).toBeGreaterThanOrEqual(2);
    expect(await s3.metric('iiif_source_cache_bytes')).toBe(await bytesOnDisk(s3.cacheDir));
    // The most recent is still on disk, the oldest is fetched again.
    const gets = store.gets();
    await s3.app.inject('/iiif/3/n5.png/full/60,/0/default.png');
    expect(store.gets()).toBe(gets);
    await s3.app.inject('/iiif/3/n0.png/full/60,/0/default.png');
    expect(wholeGets('n0.png')).toBe(2);
    expect(await bytesOnDisk(s3.cacheDir)).toBeLessThanOrEqual(bound);
  });

  it('renders an image whose cached file was evicted after it was resolved, by fetching it again', async () => {
    const s3 = await open();
    const images = new Images(s3.source, loadConfig({}), new Metrics());
    const image = await images.resolve('chart.png');
    await s3.source.purge!('chart.png'); // the file goes, as in an eviction between resolve and render
    const gets = store.gets('chart.png');
    const plan = await images.plan(3, parseImageRequest(3, 'full', 'max', '0', 'default.png'), image);
    const rendered = await images.render(image, plan);
    expect(near(await pixel(rendered.data, 10, 10), RED)).toBe(true);
    expect(store.gets('chart.png')).toBe(gets + 1);
  });

  it('is rebuilt from its folder after a restart: no refetch, leftovers removed', async () => {
    const first = await open();
    await store.put('restart.png', chart);
    await expectChart(first, 'restart.png');
    await expectChart(first);
    await first.app.close();
    await writeFile(join(first.cacheDir, '.tmp-interrupted-download'), randomBytes(1000));
    const gets = store.gets();

    const second = await open({}, first.cacheDir);
    await expectChart(second, 'restart.png');
    await expectChart(second);
    expect(store.gets()).toBe(gets);
    expect(await second.metric('iiif_source_cache_hits_total')).toBeGreaterThanOrEqual(2);
    expect(await second.metric('iiif_source_cache_misses_total')).toBe(0);
    expect((await readdir(first.cacheDir)).some((name) => name.startsWith('.tmp-'))).toBe(false);
  });

  it('revalidates after the interval: an unchanged object costs a 304, a changed one (new ETag) is fetched again', async () => {
    await store.put('changing.jpg', chartJpeg);
    const s3 = await open({ IIIF_S3_REVALIDATE_SECONDS: '1' });
    const first = await s3.app.inject(tile('changing.jpg'));
    expect(near(await pixel(first.rawPayload, 10, 10), RED)).toBe(true);
    expect(store.gets('changing.jpg')).toBe(1);

    await new Promise((resolve) => setTimeout(resolve, 1100));
    await s3.app.inject(tile('changing.jpg'));
    expect(store.gets('changing.jpg')).toBe(2);
    expect(store.requests.at(-1)?.ifNoneMatch).toMatch(/^".+"$/);
    expect(await s3.metric('iiif_source_fetch_total{result="not_modified"}')).toBe(1);

    const green = await sharp({ create: { width: 400, height: 200, channels: 3, background: '#0f0' } }).jpeg().toBuffer();
    await store.put('changing.jpg', green);
    // Within the interval the cached copy is served without asking S3.
    const cached = await s3.app.inject(tile('changing.jpg'));
    expect(near(await pixel(cached.rawPayload, 10, 10), RED)).toBe(true);
    expect(store.gets('changing.jpg')).toBe(2);

    await new Promise((resolve) => setTimeout(resolve, 1100));
    const changed = await s3.app.inject(tile('changing.jpg'));
    expect(near(await pixel(changed.rawPayload, 10, 10), GREEN)).toBe(true);
    expect(changed.headers.etag).not.toBe(first.headers.etag);
    expect(store.gets('changing.jpg')).toBe(3);
  });

  it('remembers a missing key for the negative TTL: repeated 404s cost one request', async () => {
    const s3 = await open();
    for (let i = 0; i < 5; i++) expect((await s3.app.inject(tile('nowhere.png'))).statusCode).toBe(404);
    expect(store.gets('nowhere.png')).toBe(1);
    expect(await s3.metric('iiif_source_fetch_total{result="not_found"}')).toBe(1);
    expect(await s3.metric('iiif_source_negative_cache_hits_total')).toBe(4);
  });

  it('degrades to serving uncached when the cache folder cannot be written, and never crashes', async () => {
    const blocker = join(await mkdtemp(join(tmpdir(), 'iiif-cache-')), 'a-file');
    await writeFile(blocker, 'not a folder');
    // A folder below a regular file cannot exist, whoever we run as (root ignores permissions).
    const s3 = await open({}, join(blocker, 'cache'));
    await expectChart(s3);
    await expectChart(s3);
    expect(await s3.metric('iiif_source_cache_degraded')).toBe(1);
    expect(await s3.metric('iiif_source_cache_write_failures_total')).toBeGreaterThanOrEqual(2);
    expect(s3.logs.filter((l) => l.level === 'warn' && /cannot be written/.test(l.message))).toHaveLength(1);
    expect((await s3.app.inject('/health')).statusCode).toBe(200);
  });
});

describe('S3 source: failures', () => {
  const quick = { IIIF_S3_MAX_ATTEMPTS: '2', IIIF_S3_TIMEOUT_MS: '300', IIIF_S3_DEADLINE_MS: '1500', IIIF_S3_RETRY_AFTER_SECONDS: '7' };

  it.each([
    ['throttling (503 SlowDown)', { status: 503, code: 'SlowDown' }],
    ['an internal error (500)', { status: 500, code: 'InternalError' }],
  ])('answers 503 with Retry-After after bounded retries on %s, then recovers', async (_name, fault) => {
    const s3 = await open(quick);
    const id = `flaky-${fault.status}.png`;
    await store.put(id, chart);
    store.fault = (r) => (r.key === id ? fault : undefined);
    const response = await s3.app.inject(tile(id));
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBe('7');
    expect(store.gets(id)).toBe(2); // IIIF_S3_MAX_ATTEMPTS
    store.fault = undefined;
    await expectChart(s3, id);
    expect((await s3.app.inject('/health')).statusCode).toBe(200);
  });

  it('answers 503 when S3 is too slow, within the deadline, then recovers', async () => {
    const s3 = await open(quick);
    await store.put('slow.png', chart);
    store.fault = (r) => (r.key === 'slow.png' ? { delayMs: 5_000 } : undefined);
    const response = await s3.app.inject(tile('slow.png'));
    expect(response.statusCode).toBe(503);
    expect(response.headers['retry-after']).toBe('7');
    store.fault = undefined;
    await expectChart(s3, 'slow.png');
  });

  it('answers 503 when S3 is stopped (connection refused), then recovers when it is back', async () => {
    const s3 = await open(quick);
    await store.stopProxy();
    try {
      const response = await s3.app.inject(tile('chart.png'));
      expect(response.statusCode).toBe(503);
      expect(await s3.metric('iiif_source_fetch_total{result="unavailable"}')).toBe(2);
    } finally {
      await store.startProxy();
    }
    await expectChart(s3);
  });

  it('answers 502 for a truncated body and never caches the partial file', async () => {
    const s3 = await open(quick);
    await store.put('cut.png', chart);
    store.fault = (r) => (r.key === 'cut.png' ? { truncate: true } : undefined);
    const response = await s3.app.inject(tile('cut.png'));
    expect(response.statusCode).toBe(502);
    expect(store.gets('cut.png')).toBe(2);
    expect(await readdir(s3.cacheDir)).toEqual([]);
    expect(await s3.metric('iiif_source_fetch_total{result="incomplete"}')).toBe(2);
    store.fault = undefined;
    await expectChart(s3, 'cut.png');
  });

  it('answers 404 when S3 denies access, without retrying', async () => {
    const s3 = await open(quick);
    store.fault = (r) => (r.key === 'secret.png' ? { status: 403, code: 'AccessDenied' } : undefined);
    expect((await s3.app.inject(tile('secret.png'))).statusCode).toBe(404);
    expect(store.gets('secret.png')).toBe(1);
    expect(await s3.metric('iiif_source_fetch_total{result="denied"}')).toBe(1);
  });

  it('serves the cached copy when S3 fails during revalidation', async () => {
    const s3 = await open({ ...quick, IIIF_S3_REVALIDATE_SECONDS: '0' });
    await store.put('stale.png', chart);
    await expectChart(s3, 'stale.png');
    store.fault = (r) => (r.key === 'stale.png' ? { status: 503, code: 'SlowDown' } : undefined);
    await expectChart(s3, 'stale.png');
    expect(await s3.metric('iiif_source_stale_served_total')).toBe(1);
  });
});

describe('purge endpoint', () => {
  const token = 'a-long-enough-operator-token';

  it('does not exist without IIIF_ADMIN_TOKEN', async () => {
    const s3 = await open();
    expect((await s3.app.inject({ method: 'DELETE', url: '/admin/cache/chart.png' })).statusCode).toBe(404);
  });

  it('refuses missing and wrong tokens', async () => {
    const s3 = await open({ IIIF_ADMIN_TOKEN: token });
    const missing = await s3.app.inject({ method: 'DELETE', url: '/admin/cache/chart.png' });
    expect(missing.statusCode).toBe(401);
    expect(missing.headers['www-authenticate']).toBe('Bearer');
    const wrong = await s3.app.inject({ method: 'DELETE', url: '/admin/cache/chart.png', headers: { authorization: 'Bearer nope' } });
    expect(wrong.statusCode).toBe(403);
  });

  it('drops the disk copy, the remembered 404 and the metadata of one identifier', async () => {
    const s3 = await open({ IIIF_ADMIN_TOKEN: token });
    const auth = { authorization: `Bearer ${token}` };
    await expectChart(s3, 'deep/dir/chart.png');
    expect((await s3.app.inject(tile('later.png'))).statusCode).toBe(404);
    const files = (await readdir(s3.cacheDir)).length;
    const gets = store.gets();

    const purge = await s3.app.inject({ method: 'DELETE', url: `/admin/cache/${encodeURIComponent('deep/dir/chart.png')}`, headers: auth });
    expect(purge.statusCode).toBe(204);
    expect((await readdir(s3.cacheDir)).length).toBe(files - 1); // its folder: blocks, whole copy, record
    await expectChart(s3, 'deep/dir/chart.png');
    expect(store.gets() - gets).toBe(1);

    await store.put('later.png', chart);
    expect((await s3.app.inject(tile('later.png'))).statusCode).toBe(404); // still remembered
    expect((await s3.app.inject({ method: 'DELETE', url: '/admin/cache/later.png', headers: auth })).statusCode).toBe(204);
    expect((await s3.app.inject(tile('later.png'))).statusCode).toBe(200);
    expect((await s3.app.inject({ method: 'DELETE', url: '/admin/cache/a/b', headers: auth })).statusCode).toBe(404);
  });
});

describe('/metrics for the source layer', () => {
  it('exposes fetch counts and times, cache hits, misses, bytes and evictions, never identifiers', async () => {
    const s3 = await open();
    await expectChart(s3);
    const text = (await s3.app.inject('/metrics')).body;
    for (const name of [
      'iiif_source_fetch_total{result="ok"} 1',
      'iiif_source_fetch_seconds_count 1',
      'iiif_source_cache_misses_total 1',
      'iiif_source_cache_hits_total 0',
      'iiif_source_cache_evictions_total 0',
    ]) {
      expect(text).toContain(name);
    }
    expect(text).toMatch(/^iiif_source_cache_bytes [1-9]\d*$/m);
    expect(text).not.toContain('chart');
  });
});
