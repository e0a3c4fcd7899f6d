import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { basename } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from './s3-store.js';
import { readTiffLayout } from '../../src/image/tiles/tiff-layout.js';
import { bufferReader } from '../../src/source/range-reader.js';
import { near, pixel, pngBomb } from '../fixtures.js';
import { s3AppOpener } from './s3-app.js';
import { BLOCK, blockFiles, colourAt, expectTileOf, H, scan, tileUrl, W } from './s3-scan.js';

let store: S3Store;
let v1: Buffer;
let v2: Buffer;
beforeAll(async () => {
  store = await S3Store.start();
  [v1, v2] = await Promise.all([scan(200), scan(20)]);
  await store.put('scan.tif', v1);
}, 60_000);
afterAll(() => store.close());

const open = s3AppOpener(() => store);

/** What the proxy forwarded while `work` ran. */
async function trafficOf<T>(work: () => Promise<T>): Promise<{ result: T; gets: number; rangeGets: number; bytes: number }> {
  const before = store.traffic();
  const result = await work();
  const after = store.traffic();
  return { result, gets: after.gets - before.gets, rangeGets: after.rangeGets - before.rangeGets, bytes: after.bytes - before.bytes };
}

const quick = { IIIF_S3_MAX_ATTEMPTS: '2', IIIF_S3_TIMEOUT_MS: '300', IIIF_S3_DEADLINE_MS: '1500', IIIF_S3_RETRY_AFTER_SECONDS: '7' };

describe('S3 source read by range', () => {
  it('answers info.json from two ranged GETs (first block, first directory), without downloading the image', async () => {
    const s3 = await open();
    const { result: info, gets, rangeGets, bytes } = await trafficOf(() => s3.app.inject('/iiif/3/scan.tif/info.json'));
    expect(info.statusCode).toBe(200);
    expect(info.json()).toMatchObject({ width: W, height: H });
    expect([gets, rangeGets]).toEqual([2, 2]);
    expect(bytes).toBeLessThanOrEqual(2 * BLOCK);
    expect(v1.length).toBeGreaterThan(20 * bytes);
  });

  it('serves a full-resolution tile as its stored JPEG after one more ranged GET', async () => {
    const s3 = await open();
    await s3.app.inject('/iiif/3/scan.tif/info.json');
    const { result: tile, gets, rangeGets, bytes } = await trafficOf(() => s3.app.inject(tileUrl('scan.tif', 7, 5)));
    expect(tile.statusCode).toBe(200);
    expect(tile.headers['x-iiif-render']).toBe('passthrough; cache=miss');
    expect(tile.headers['x-iiif-source-level']).toBe('0');
    await expectTileOf(tile.rawPayload, 7, 5, 200);
    expect([gets, rangeGets]).toEqual([1, 1]);
    expect(bytes).toBeLessThanOrEqual(2 * BLOCK);
  });

  it('reads smaller levels when a request needs them, and never the whole object', async () => {
    const s3 = await open();
    await s3.app.inject('/iiif/3/scan.tif/info.json');
    // Scale factor 16: level 4, 256×192, one stored tile.
    const { result: small, gets } = await trafficOf(() => s3.app.inject('/iiif/3/scan.tif/full/256,192/0/default.jpg'));
    expect(small.statusCode).toBe(200);
    expect(small.headers['x-iiif-source-level']).toBe('4');
    // Its one stored tile, padded to 256×256, cut to the level's height without decoding.
    expect(small.headers['x-iiif-render']).toBe('cut; cache=miss');
    expect(gets).toBeGreaterThanOrEqual(1);
    expect(near(await pixel(small.rawPayload, 200, 40), colourAt(200 * 16, 40 * 16, 200), 30)).toBe(true);
    expect(store.requests.filter((r) => r.key === 'scan.tif' && r.method === 'GET' && !r.range)).toEqual([]);
  });

  it('renders a region across stored tiles from those tiles alone, with the right pixels', async () => {
    const s3 = await open();
    const response = await s3.app.inject('/iiif/3/scan.tif/200,300,600,400/300,/0/default.png');
    expect(response.statusCode).toBe(200);
    // Up to 16 stored tiles are read by range and decoded as one JPEG cut from them.
    expect(response.headers['x-iiif-render']).toBe('tile; cache=miss');
    for (const [x, y] of [[10, 10], [150, 100], [290, 190]] as const) {
      expect(near(await pixel(response.rawPayload, x, y), colourAt(200 + x * 2, 300 + y * 2, 200), 30)).toBe(true);
    }
    // Rotated and from a smaller level too.
    const turned = await s3.app.inject('/iiif/3/scan.tif/0,0,2048,2048/256,/90/default.png');
    expect(turned.statusCode).toBe(200);
    expect(near(await pixel(turned.rawPayload, 250, 5), colourAt(5 * 8, 5 * 8, 200), 30)).toBe(true);
    expect(store.requests.filter((r) => r.key === 'scan.tif' && r.method === 'GET' && !r.range)).toEqual([]);
  });

  it('fetches adjacent tiles asked for together in one GET, and a block many requests need once', async () => {
    const s3 = await open();
    await s3.app.inject('/iiif/3/scan.tif/info.json');
    // Eight tiles of one row: adjacent bytes.
    const row = await trafficOf(() => Promise.all(Array.from({ length: 8 }, (_, column) => s3.app.inject(tileUrl('scan.tif', column, 3)))));
    expect(row.result.map((r) => r.statusCode)).toEqual(Array(8).fill(200));
    await expectTileOf(row.result[6]!.rawPayload, 6, 3, 200);
    expect(row.gets).toBe(1);
    // The same uncached tile in twenty forms at once.
    const forms = ['jpg', 'png', 'webp', 'gif'];
    const same = await trafficOf(() => Promise.all(Array.from({ length: 20 }, (_, i) => s3.app.inject(`${tileUrl('scan.tif', 9, 9, forms[i % 4])}?v=${i}`))));
    expect(same.result.every((r) => r.statusCode === 200)).toBe(true);
    expect(same.gets).toBe(1);
  });

  it('serves from its disk cache after a restart, without asking S3', async () => {
    const first = await open();
    await first.app.inject('/iiif/3/scan.tif/info.json');
    // Blocks go to disk on their second use.
    for (const format of ['jpg', 'png']) await first.app.inject(tileUrl('scan.tif', 2, 2, format));
    await first.app.close();
    const second = await open({}, first.cacheDir);
    const { result, gets } = await trafficOf(async () => [await second.app.inject('/iiif/3/scan.tif/info.json'), await second.app.inject(tileUrl('scan.tif', 2, 2))]);
    expect(result.map((r) => r.statusCode)).toEqual([200, 200]);
    await expectTileOf(result[1]!.rawPayload, 2, 2, 200);
    expect(gets).toBe(0);
  });

  it('writes a block to disk on its second use, not its first', async () => {
    const page = (await readTiffLayout(bufferReader(v1)))![0]!;
    const tileBlocks = (column: number, row: number) => {
      const [offset, length] = [page.tileOffsets[row * 16 + column]!, page.tileByteCounts[row * 16 + column]!];
      return Array.from({ length: Math.floor((offset + length - 1) / BLOCK) - Math.floor(offset / BLOCK) + 1 }, (_, i) => Math.floor(offset / BLOCK) + i);
    };
    const stored = async (dir: string) => new Set((await blockFiles(dir)).map((file) => Number(basename(file).slice(1))));
    // Tiles whose blocks hold no directory (those are read twice by info.json alone).
    const [once, twice] = [tileBlocks(12, 9), tileBlocks(3, 10)];
    const s3 = await open();
    await s3.app.inject('/iiif/3/scan.tif/info.json');
    expect((await s3.app.inject(tileUrl('scan.tif', 12, 9))).statusCode).toBe(200);
    for (const format of ['jpg', 'png']) expect((await s3.app.inject(tileUrl('scan.tif', 3, 10, format))).statusCode).toBe(200);
    await s3.app.close(); // its cache writes finish
    const onDisk = await stored(s3.cacheDir);
    expect(once.filter((block) => onDisk.has(block))).toEqual([]);
    expect(twice.filter((block) => !onDisk.has(block))).toEqual([]);
  });

  it('fetches a format decoded whole (PNG) once: its header block, then the whole object, then nothing', async () => {
    const png = await sharp(randomBytes(300 * 300 * 3), { raw: { width: 300, height: 300, channels: 3 } }).png({ compressionLevel: 0 }).toBuffer();
    expect(png.length).toBeGreaterThan(2 * BLOCK);
    await store.put('noise.png', png);
    const s3 = await open();
    const info = await trafficOf(() => s3.app.inject('/iiif/3/noise.png/info.json'));
    expect(info.result.json()).toMatchObject({ width: 300, height: 300 });
    expect([info.gets, info.rangeGets]).toEqual([1, 1]);
    const first = await trafficOf(() => s3.app.inject('/iiif/3/noise.png/full/100,/0/default.png'));
    expect([first.result.statusCode, first.gets, first.rangeGets, first.bytes]).toEqual([200, 1, 0, png.length]);
    const again = await trafficOf(() => s3.app.inject('/iiif/3/noise.png/full/50,/0/default.png'));
    expect([again.result.statusCode, again.gets]).toEqual([200, 0]);
  });

  it('refuses a decompression bomb from its header block, without fetching the rest', async () => {
    await store.put('bomb.png', Buffer.concat([pngBomb(60_000, 60_000), randomBytes(4 * BLOCK)]));
    const s3 = await open();
    const { result, gets } = await trafficOf(() => s3.app.inject('/iiif/3/bomb.png/info.json'));
    expect(result.statusCode).toBe(413);
    expect(gets).toBe(1);
  });
});

describe('S3 ranged reads: faults', () => {
  it('an object replaced between two ranged reads: that request gets 503, never bytes of both versions; the next reads the new one', async () => {
    await store.put('changing.tif', v1);
    const s3 = await open();
    await s3.app.inject('/iiif/3/changing.tif/info.json');
    const before = await s3.app.inject(tileUrl('changing.tif', 1, 1));
    await expectTileOf(before.rawPayload, 1, 1, 200);
    await store.put('changing.tif', v2);
    // Its version is still trusted (revalidation interval), but the block is pinned to it: S3 says 412.
    const during = await s3.app.inject(tileUrl('changing.tif', 8, 6));
    expect(during.statusCode).toBe(503);
    expect(during.headers['retry-after']).toBe('1');
    expect(store.requests.some((r) => r.key === 'changing.tif' && r.ifMatch !== undefined)).toBe(true);
    expect(await s3.metric('iiif_source_fetch_total{result="changed"}')).toBe(1);
    const after = await s3.app.inject(tileUrl('changing.tif', 8, 6));
    expect(after.statusCode).toBe(200);
    await expectTileOf(after.rawPayload, 8, 6, 20);
    // Every later answer is of the new version, and says so.
    const again = await s3.app.inject(tileUrl('changing.tif', 1, 1));
    await expectTileOf(again.rawPayload, 1, 1, 20);
    expect(again.headers.etag).not.toBe(before.headers.etag);
  });

  it('a 412 on a block re-resolves the object: the request gets 503, the next succeeds', async () => {
    const s3 = await open();
    await s3.app.inject('/iiif/3/scan.tif/info.json');
    const resolutions = () => store.requests.filter((r) => r.key === 'scan.tif' && r.range === `bytes=0-${BLOCK - 1}`).length;
    const before = resolutions();
    store.fault = (r) => (r.key === 'scan.tif' && r.ifMatch ? { status: 412, code: 'PreconditionFailed' } : undefined);
    const during = await s3.app.inject(tileUrl('scan.tif', 4, 7));
    expect(during.statusCode).toBe(503);
    store.fault = undefined;
    const after = await s3.app.inject(tileUrl('scan.tif', 4, 7));
    expect(after.statusCode).toBe(200);
    await expectTileOf(after.rawPayload, 4, 7, 200);
    expect(resolutions()).toBe(before + 1);
  });

  it('a truncated range: 502 after bounded attempts, nothing cached from it, then the right bytes', async () => {
    const s3 = await open(quick);
    await s3.app.inject('/iiif/3/scan.tif/info.json');
    store.fault = (r) => (r.key === 'scan.tif' && r.ifMatch ? { truncate: true } : undefined);
    const { result, gets } = await trafficOf(() => s3.app.inject(tileUrl('scan.tif', 3, 8)));
    expect(result.statusCode).toBe(502);
    expect(gets).toBe(2); // IIIF_S3_MAX_ATTEMPTS
    expect(await s3.metric('iiif_source_fetch_total{result="incomplete"}')).toBe(2);
    store.fault = undefined;
    await s3.app.close(); // its cache writes finish
    // None of the blocks under that tile was stored.
    const page = (await readTiffLayout(bufferReader(v1)))![0]!;
    const [offset, length] = [page.tileOffsets[8 * 16 + 3]!, page.tileByteCounts[8 * 16 + 3]!];
    const stored = new Set((await blockFiles(s3.cacheDir)).map((file) => Number(basename(file).slice(1))));
    for (let block = Math.floor(offset / BLOCK); block <= Math.floor((offset + length - 1) / BLOCK); block++) expect(stored.has(block)).toBe(false);
    const after = await (await open({}, s3.cacheDir)).app.inject(tileUrl('scan.tif', 3, 8));
    expect(after.statusCode).toBe(200);
    await expectTileOf(after.rawPayload, 3, 8, 200);
  });

  it.each([
    ['an internal error (500)', { status: 500, code: 'InternalError' }],
    ['throttling (503 SlowDown)', { status: 503, code: 'SlowDown' }],
    ['a timeout', { delayMs: 5_000 }],
  ])('%s on a block: 503 with Retry-After for that request only, then recovery', async (_name, fault) => {
    const s3 = await open(quick);
    await s3.app.inject('/iiif/3/scan.tif/info.json');
    store.fault = (r) => (r.key === 'scan.tif' && r.ifMatch ? fault : undefined);
    const [failing, other, health] = await Promise.all([
      s3.app.inject(tileUrl('scan.tif', 10, 4)),
      s3.app.inject('/iiif/3/scan.tif/info.json?again'),
      s3.app.inject('/health'),
    ]);
    expect(failing.statusCode).toBe(503);
    expect(failing.headers['retry-after']).toBe('7');
    expect([other.statusCode, health.statusCode]).toEqual([200, 200]);
    store.fault = undefined;
    const after = await s3.app.inject(tileUrl('scan.tif', 10, 4));
    expect(after.statusCode).toBe(200);
    await expectTileOf(after.rawPayload, 10, 4, 200);
  });

  it('a block damaged on disk is fetched again, never served', async () => {
    const first = await open();
    await first.app.inject('/iiif/3/scan.tif/info.json');
    for (const format of ['jpg', 'png']) await first.app.inject(tileUrl('scan.tif', 5, 5, format));
    await first.app.close();
    const files = await blockFiles(first.cacheDir);
    for (const file of files) {
      const bytes = await readFile(file);
      bytes[bytes.length - 100]! ^= 0xff;
      await writeFile(file, bytes);
    }
    const second = await open({}, first.cacheDir);
    const { result, gets } = await trafficOf(async () => [
      await second.app.inject('/iiif/3/scan.tif/info.json'),
      await second.app.inject(tileUrl('scan.tif', 5, 5)),
      await second.app.inject(tileUrl('scan.tif', 5, 5, 'webp')),
    ]);
    expect(result.map((r) => r.statusCode)).toEqual([200, 200, 200]);
    await expectTileOf(result[1]!.rawPayload, 5, 5, 200);
    expect(gets).toBeGreaterThanOrEqual(1);
    await second.app.close();
    // Fetched again and stored intact: a third start needs nothing from S3.
    const third = await open({}, first.cacheDir);
    const again = await trafficOf(() => third.app.inject(tileUrl('scan.tif', 5, 5, 'png')));
    expect([again.result.statusCode, again.gets]).toEqual([200, 0]);
  });

  it('the cache folder disappearing while serving: requests fetch again and succeed', async () => {
    await store.put('whole.png', await sharp(v1, { page: 3 }).png().toBuffer());
    const s3 = await open();
    expect((await s3.app.inject('/iiif/3/whole.png/full/100,/0/default.png')).statusCode).toBe(200);
    expect((await s3.app.inject(tileUrl('scan.tif', 6, 2))).statusCode).toBe(200);
    await rm(s3.cacheDir, { recursive: true, force: true });
    const after = await Promise.all([
      s3.app.inject('/iiif/3/whole.png/full/120,/0/default.png'),
      s3.app.inject(tileUrl('scan.tif', 7, 2)),
      s3.app.inject('/health'),
    ]);
    expect(after.map((r) => r.statusCode)).toEqual([200, 200, 200]);
    await expectTileOf(after[1]!.rawPayload, 7, 2, 200);
    expect((await blockFiles(s3.cacheDir)).length).toBeGreaterThan(0);
  });

});
