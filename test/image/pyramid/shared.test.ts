/**
 * Pyramids shared by the fleet, end to end: real server runtimes (each with its own cache and
 * pyramid folders, as separate containers have) in front of one S3 stand-in holding the
 * sources and the derivative store.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { near, pixel, quadrants, YELLOW } from '../../fixtures.js';
import { keysUnder, PREFIX } from '../../derivatives/fleet-parts.js';
import { s3AppOpener, type S3App } from '../../source/s3-app.js';
import { blockFiles } from '../../source/s3-scan.js';
import { BUCKET, S3Store } from '../../source/s3-store.js';

const W = 3000;
const H = 2000;
const TOKEN = 'purge-token-of-the-tests';
/** A 512×512 region at full size, asked as a 256×256 tile. */
const REGION = { left: 1024, top: 768, width: 512, height: 512 };
const tileUrl = (key: string) => `/iiif/3/${key}/${REGION.left},${REGION.top},${REGION.width},${REGION.height}/256,256/0/default.png`;

let store: S3Store;
/**
 * Two different large flat JPEGs (the second is the first turned upside down) and their pixels:
 * the quadrant chart with grain, so the file is megabytes (many blocks), as a scan is.
 */
const images: Array<{ jpeg: Buffer; raw: Buffer }> = [];
beforeAll(async () => {
  store = await S3Store.start();
  const chart = await sharp(await quadrants()).resize(W, H, { fit: 'fill', kernel: 'nearest' }).removeAlpha().raw().toBuffer();
  let seed = 1;
  for (let i = 0; i < chart.length; i++) {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    chart[i] = Math.max(0, Math.min(255, chart[i]! + ((seed >> 16) % 25) - 12));
  }
  for (const angle of [0, 180]) {
    const jpeg = await sharp(chart, { raw: { width: W, height: H, channels: 3 } }).rotate(angle).jpeg({ quality: 92 }).toBuffer();
    images.push({ jpeg, raw: await sharp(jpeg).raw().toBuffer() });
  }
}, 60_000);
afterAll(() => store.close());

const open = s3AppOpener(() => store);

/** One "container": its own cache and pyramid folders, the fleet's derivative store. */
async function server(env: Record<string, string> = {}): Promise<S3App & { cacheDir: string }> {
  return open({
    IIIF_PYRAMID_DIR: await mkdtemp(join(tmpdir(), 'iiif-pyramids-')),
    IIIF_PYRAMID_THRESHOLD_PIXELS: '1000000',
    IIIF_DERIVATIVE_PREFIX: PREFIX,
    IIIF_DERIVATIVE_WAIT_MS: '60000',
    IIIF_ADMIN_TOKEN: TOKEN,
    ...env,
  });
}

/** Mean absolute difference per channel between a served tile and the same region of the source, resized alike. */
async function differenceFromSource(tile: Buffer, image: { raw: Buffer }): Promise<number> {
  const expected = await sharp(image.raw, { raw: { width: W, height: H, channels: 3 } }).extract(REGION).resize(256, 256).raw().toBuffer();
  const served = await sharp(tile).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  expect([served.info.width, served.info.height]).toEqual([256, 256]);
  let sum = 0;
  for (let i = 0; i < expected.length; i++) sum += Math.abs(expected[i]! - served.data[i]!);
  return sum / expected.length;
}

const builds = async (apps: S3App[]) => {
  const counts = await Promise.all(apps.map((a) => a.metric('iiif_pyramid_builds_total{result="built"}')));
  return counts.reduce((a, b) => a + b, 0);
};

/** GETs the proxy forwarded since `from`, of one key. */
const getsOf = (from: number, key: (k: string) => boolean) => store.requests.slice(from).filter((r) => r.method === 'GET' && key(r.key));

describe.each([
  ['a store that ignores conditional writes (s3rver)', false],
  ['a store that honours them (strict proxy)', true],
])('two servers asked for the same new large flat JPEG at once, on %s', (_name, strict) => {
  beforeAll(() => {
    store.conditionalWrites = strict;
  });
  afterAll(() => {
    store.conditionalWrites = false;
  });

  it('convert it once in all; the other reads the derivative by range; both serve the right pixels', async () => {
    const key = `fleet-${strict}.jpg`;
    await store.put(key, images[0]!.jpeg);
    const [a, b] = [await server(), await server()];
    const from = store.requests.length;
    const tiles = await Promise.all([a, b].map((s) => s.app.inject(tileUrl(key))));
    expect(tiles.map((t) => t.statusCode)).toEqual([200, 200]);
    for (const tile of tiles) expect(await differenceFromSource(tile.rawPayload, images[0]!)).toBeLessThan(6);

    expect(await builds([a, b])).toBe(1);
    const obtained = await Promise.all([a, b].map(async (s) => [await s.metric('iiif_derivative_obtained_total{result="built"}'), await s.metric('iiif_derivative_obtained_total{result="found"}')]));
    expect(obtained.map(([built]) => built).sort()).toEqual([0, 1]);
    expect(obtained.map(([, found]) => found).sort()).toEqual([0, 1]);

    // The derivative is published, and read only by range (by the server that did not convert).
    const derivativeKeys = await keysUnder(store, `${PREFIX}${key}/`);
    expect(derivativeKeys.map((k) => k.split('/').pop())).toEqual(['complete', 'info.json', 'pyramid.tif']);
    const pyramidGets = getsOf(from, (k) => k.startsWith(PREFIX) && k.endsWith('/pyramid.tif'));
    expect(pyramidGets.length).toBeGreaterThan(0);
    expect(pyramidGets.every((r) => r.range !== undefined && r.ifMatch !== undefined)).toBe(true);
    // The source went whole to the converter only; the other read its headers by range.
    expect(getsOf(from, (k) => k === key).filter((r) => r.range === undefined)).toHaveLength(1);

    // Another tile on the reader: stored tiles of the derivative, no conversion anywhere.
    const again = await b.app.inject(`/iiif/3/${key}/0,0,1024,1024/256,256/0/default.jpg`);
    expect(again.statusCode).toBe(200);
    expect(await builds([a, b])).toBe(1);
  }, 120_000);
});

describe('shared pyramids', () => {
  it('a derivative of an older source version is not used: the new version is converted and served', async () => {
    const key = 'changed.jpg';
    await store.put(key, images[0]!.jpeg);
    const first = await server();
    expect((await first.app.inject(tileUrl(key))).statusCode).toBe(200);
    await store.put(key, images[1]!.jpeg);

    const second = await server();
    const tile = await second.app.inject(tileUrl(key));
    expect(tile.statusCode).toBe(200);
    expect(await differenceFromSource(tile.rawPayload, images[1]!)).toBeLessThan(6);
    expect(await differenceFromSource(tile.rawPayload, images[0]!)).toBeGreaterThan(50);
    expect(await second.metric('iiif_derivative_obtained_total{result="found"}')).toBe(0);
    expect(await builds([second])).toBe(1);
    // Two versions stored now, one per source ETag.
    expect((await keysUnder(store, `${PREFIX}${key}/`)).filter((k) => k.endsWith('/complete'))).toHaveLength(2);
  }, 120_000);

  it('a wait for another server\'s conversion that runs out serves the source, and the next request takes the derivative', async () => {
    const key = 'slow.jpg';
    await store.put(key, images[0]!.jpeg);
    // The converter's upload is slow to start: it holds the lease for a while.
    store.fault = (request) => (request.method === 'PUT' && request.key.endsWith('/pyramid.tif') ? { delayMs: 3000 } : undefined);
    const converter = await server();
    // No result cache: a request asked again is rendered again (its plan is remembered).
    const impatient = await server({ IIIF_DERIVATIVE_WAIT_MS: '200', IIIF_RESULT_CACHE_BYTES: '0' });
    const converting = converter.app.inject(tileUrl(key));
    while (!(await keysUnder(store, `${PREFIX}${key}/`)).some((k) => k.endsWith('/lease'))) await sleep(50);

    const meanwhile = await impatient.app.inject(tileUrl(key));
    expect(meanwhile.statusCode).toBe(200);
    expect(meanwhile.headers['x-iiif-source-level']).toBe('0');
    expect(await differenceFromSource(meanwhile.rawPayload, images[0]!)).toBeLessThan(6);
    expect(await impatient.metric('iiif_derivative_obtained_total{result="timeout"}')).toBe(1);

    expect((await converting).statusCode).toBe(200);
    // The same request again: its remembered plan now reads the derivative's half-size level.
    const later = await impatient.app.inject(tileUrl(key));
    expect(later.statusCode).toBe(200);
    expect(later.headers['x-iiif-source-level']).toBe('1');
    expect(await differenceFromSource(later.rawPayload, images[0]!)).toBeLessThan(6);
    expect(await impatient.metric('iiif_derivative_obtained_total{result="found"}')).toBe(1);
    expect(await builds([converter, impatient])).toBe(1);
  }, 120_000);

  /** Publishes the derivative of a new source `key`: one server converts it for a tile. */
  async function publish(key: string): Promise<void> {
    await store.put(key, images[0]!.jpeg);
    const converter = await server();
    expect((await converter.app.inject(tileUrl(key))).statusCode).toBe(200);
  }

  /**
   * A fresh server asked for one stored tile of `key`'s published derivative (sent as it is:
   * read once): the tile, the pyramid GETs it cost, and then, once the server has closed (its
   * cache writes finished), the block files it wrote.
   */
  async function firstStoredTile(key: string) {
    const reader = await server();
    const before = await blockFiles(reader.cacheDir);
    const from = store.requests.length;
    const tile = await reader.app.inject(`/iiif/3/${key}/0,0,256,256/256,256/0/default.jpg`);
    const pyramidGets = getsOf(from, (k) => k.endsWith('/pyramid.tif')).length;
    const found = await reader.metric('iiif_derivative_obtained_total{result="found"}');
    await reader.app.close();
    const written = (await blockFiles(reader.cacheDir)).filter((file) => !before.includes(file));
    return { tile, pyramidGets, found, written };
  }

  it('a server opening a published derivative reads its directories with the marker and writes none of its blocks to disk for a tile asked once', async () => {
    await publish('opened.jpg');
    const { tile, pyramidGets, found, written } = await firstStoredTile('opened.jpg');
    expect(tile.statusCode).toBe(200);
    expect(tile.headers['x-iiif-render']).toBe('passthrough; cache=miss');
    expect(found).toBe(1);
    // Its directories came with the marker: the pyramid was read once, for the tile.
    expect(pyramidGets).toBe(1);
    // The source's first block (its version and format) is all that went to disk.
    expect(written).toHaveLength(1);
  }, 120_000);

  it('a marker that carries no directories (an older server\'s): the reader fetches them in one round, still writing none to disk', async () => {
    const key = 'older-marker.jpg';
    await publish(key);
    const markerKey = (await keysUnder(store, `${PREFIX}${key}/`)).find((k) => k.endsWith('/complete'))!;
    const marker = await store.uploader.send(new GetObjectCommand({ Bucket: BUCKET, Key: markerKey }));
    await store.uploader.send(new PutObjectCommand({ Bucket: BUCKET, Key: markerKey, Body: Buffer.from('{}'), Metadata: marker.Metadata }));
    const { tile, pyramidGets, written } = await firstStoredTile(key);
    expect(tile.statusCode).toBe(200);
    const at = (128 * W + 128) * 3;
    expect(near(await pixel(tile.rawPayload, 128, 128), [...images[0]!.raw.subarray(at, at + 3)], 20)).toBe(true);
    // The directories' spans (adjacent blocks in one GET) and the tile.
    const spans = (marker.Metadata!.directories ?? '').split(',').length;
    expect(pyramidGets).toBeGreaterThan(1);
    expect(pyramidGets).toBeLessThanOrEqual(spans + 1);
    expect(written).toHaveLength(1);
  }, 120_000);

  it('a derivative deleted while a server reads it: the server obtains the pyramid again and serves the right pixels', async () => {
    const key = 'deleted.jpg';
    await store.put(key, images[0]!.jpeg);
    const converter = await server();
    expect((await converter.app.inject(tileUrl(key))).statusCode).toBe(200);
    const reader = await server();
    expect((await reader.app.inject(tileUrl(key))).statusCode).toBe(200);
    expect(await reader.metric('iiif_derivative_obtained_total{result="found"}')).toBe(1);
    for (const stored of await keysUnder(store, `${PREFIX}${key}/`)) await store.remove(stored);

    // Bytes of the derivative the reader has not read yet: a ranged GET now answered 404.
    const corner = await reader.app.inject(`/iiif/3/${key}/2560,1536,440,464/440,/0/default.png`);
    expect(corner.statusCode).toBe(200);
    expect(near(await pixel(corner.rawPayload, 220, 232), YELLOW)).toBe(true);
    expect(await builds([reader])).toBe(1);
  }, 120_000);

  it('S3 refusing the derivative upload: the pixels are served from the local pyramid, the failure logged once', async () => {
    const key = 'refused.jpg';
    await store.put(key, images[0]!.jpeg);
    store.fault = (request) => (request.method === 'PUT' && request.key.endsWith('/pyramid.tif') ? { status: 403, code: 'AccessDenied' } : undefined);
    const s = await server();
    const tile = await s.app.inject(tileUrl(key));
    expect(tile.statusCode).toBe(200);
    expect(await differenceFromSource(tile.rawPayload, images[0]!)).toBeLessThan(6);
    expect(await builds([s])).toBe(1);
    expect(await s.metric('iiif_derivative_fallbacks_total')).toBe(1);
    expect(s.logs.filter((line) => line.message.startsWith('the derivative store failed'))).toHaveLength(1);
    expect((await keysUnder(store, `${PREFIX}${key}/`)).filter((k) => k.endsWith('/complete'))).toEqual([]);
    // Later tiles come from the same local pyramid: nothing converted again.
    expect((await s.app.inject(`/iiif/3/${key}/full/600,/0/default.jpg`)).statusCode).toBe(200);
    expect(await builds([s])).toBe(1);
  }, 120_000);

  it('the purge route deletes the derivatives too; the listing leaves the derivative store out', async () => {
    const key = 'purged.jpg';
    await store.put(key, images[0]!.jpeg);
    const s = await server();
    expect((await s.app.inject(tileUrl(key))).statusCode).toBe(200);
    expect(await keysUnder(store, `${PREFIX}${key}/`)).toHaveLength(3);
    expect((await s.source.list!(1000)).filter((identifier) => identifier.startsWith(PREFIX))).toEqual([]);
    // Nor can a derivative, a lease or a marker be asked for as an image: 404, S3 not asked.
    const before = store.requests.length;
    for (const name of ['pyramid.tif', 'complete', 'info.json']) {
      const asImage = await s.app.inject(`/iiif/3/${encodeURIComponent(`${PREFIX}${key}/${name}`)}/info.json`);
      expect(asImage.statusCode).toBe(404);
    }
    expect(store.requests.length).toBe(before);

    const purge = await s.app.inject({ method: 'DELETE', url: `/admin/cache/${key}`, headers: { authorization: `Bearer ${TOKEN}` } });
    expect(purge.statusCode).toBe(204);
    expect(await keysUnder(store, `${PREFIX}${key}/`)).toEqual([]);
  }, 120_000);
});
