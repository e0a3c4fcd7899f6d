import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gradientColour, makeFixtures, near, pixel } from '../fixtures.js';
import { appFor } from '../http/helpers.js';
import { nativeJpegAvailable } from '../../src/image/tiles/jpeg-native.js';

let root: string;
let app: FastifyInstance;
beforeAll(async () => {
  ({ root } = await makeFixtures());
  app = await appFor(root, { IIIF_SOURCE_RECHECK_MS: '100' });
});
afterAll(() => app.close());

const get = (url: string) => app.inject({ url });

describe('stored-tile pass-through', () => {
  it('sends an aligned full tile of a stored level as the stored JPEG, with the right pixels', async () => {
    // Scale factor 2 (level 1), column 1, row 1: full-resolution region 512,512,512,512.
    const response = await get('/iiif/3/gradient.tif/512,512,512,512/256,256/0/default.jpg');
    expect(response.statusCode).toBe(200);
    expect(response.headers['x-iiif-render']).toMatch(/^passthrough/);
    expect(response.headers['x-iiif-source-level']).toBe('1');
    const meta = await sharp(response.rawPayload).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 256, 256]);
    // Centre of the tile is full-resolution (768, 768).
    expect(near(await pixel(response.rawPayload, 128, 128), gradientColour(768, 768), 8)).toBe(true);
    // Same pixels as libvips reads for that tile of level 1.
    const { join } = await import('node:path');
    const direct = await sharp(join(root, 'gradient.tif'), { page: 1 }).extract({ left: 256, top: 256, width: 256, height: 256 }).png().toBuffer();
    for (const [x, y] of [[10, 10], [128, 128], [250, 200]] as const) {
      expect(near(await pixel(response.rawPayload, x, y), await pixel(direct, x, y), 4)).toBe(true);
    }
  });

  it('works with 2.1 tile syntax (w,) and at full resolution', async () => {
    const response = await get('/iiif/2/gradient.tif/256,0,256,256/256,/0/default.jpg');
    expect(response.headers['x-iiif-render']).toMatch(/^passthrough/);
    expect(response.headers['x-iiif-source-level']).toBe('0');
    expect(near(await pixel(response.rawPayload, 128, 128), gradientColour(384, 128), 8)).toBe(true);
  });

  it.each([
    ['an edge tile (the stored tile is padded)', '/iiif/3/gradient.tif/1792,0,208,256/208,256/0/default.jpg', 'cut'],
    ['an edge tile as PNG', '/iiif/3/gradient.tif/1792,0,208,256/208,256/0/default.png', 'tile'],
    ['another output format', '/iiif/3/gradient.tif/0,0,256,256/256,256/0/default.webp', 'tile'],
    ['gray quality', '/iiif/3/gradient.tif/0,0,256,256/256,256/0/gray.jpg', 'tile'],
    ['a rotation', '/iiif/3/gradient.tif/0,0,256,256/256,256/90/default.jpg', 'tile'],
    ['a mirror', '/iiif/3/gradient.tif/0,0,256,256/256,256/!0/default.jpg', 'tile'],
    ['a smaller output from inside one stored tile', '/iiif/3/gradient.tif/0,0,512,512/200,200/0/default.jpg', 'tile'],
    // libjpeg-turbo through native/jpegtiles when it is built (npm ci builds it where Debian's headers are), else sharp.
    ['a region across stored tiles', '/iiif/3/gradient.tif/100,0,256,256/256,256/0/default.jpg', nativeJpegAvailable() ? 'libjpeg' : 'tile'],
    ['a region across more stored tiles than one request decodes alone', '/iiif/3/gradient.tif/0,0,1500,1200/max/0/default.jpg', 'sharp'],
    ['a strip TIFF', '/iiif/3/chart.tif/0,0,256,100/256,100/0/default.jpg', 'sharp'],
  ])('renders %s from %s', async (_name, url, method) => {
    const response = await get(url);
    expect(response.statusCode).toBe(200);
    expect(response.headers['x-iiif-render']).toBe(`${method}; cache=miss`);
  });

  it('renders a region across stored tiles through sharp when the native renderer is turned off', async () => {
    const sharpOnly = await appFor(root, { IIIF_NATIVE_JPEG: 'false' });
    try {
      const response = await sharpOnly.inject({ url: '/iiif/3/gradient.tif/100,0,256,256/256,256/0/default.jpg' });
      expect(response.headers['x-iiif-render']).toBe('tile; cache=miss');
      expect(near(await pixel(response.rawPayload, 128, 128), gradientColour(228, 128), 8)).toBe(true);
    } finally {
      await sharpOnly.close();
    }
  });

  it.each([
    ['an edge tile', '1792,1280,208,220/208,220/0/default.jpg', [208, 220], [1896, 1390]],
    ['a region across stored tiles', '100,30,256,256/256,256/0/default.jpg', [256, 256], [228, 158]],
    ['a crop inside one tile', '300,300,100,50/50,25/0/default.png', [50, 25], [350, 325]],
    ['a tile of a level across stored tiles', '100,100,600,400/300,200/0/default.png', [300, 200], [400, 300]],
  ])('%s has the right size and content', async (_name, params, size, centre) => {
    const response = await get(`/iiif/3/gradient.tif/${params}`);
    const meta = await sharp(response.rawPayload).metadata();
    expect([meta.width, meta.height]).toEqual(size);
    expect(near(await pixel(response.rawPayload, size[0]! >> 1, size[1]! >> 1), gradientColour(centre[0]!, centre[1]!), 8)).toBe(true);
  });

  it('a mirrored tile decoded from one stored tile is mirrored', async () => {
    const response = await get('/iiif/3/gradient.tif/0,0,256,256/256,256/!0/default.png');
    // Mirrored: the left edge shows what is at x = 255.
    expect(near(await pixel(response.rawPayload, 2, 128), gradientColour(253, 128), 8)).toBe(true);
  });
});

describe('result cache', () => {
  it('a repeated request is served from memory without rendering again', async () => {
    const url = '/iiif/3/gradient.tif/pct:10,10,20,20/150,/0/default.webp';
    const first = await get(url);
    const second = await get(url);
    expect(first.headers['x-iiif-render']).toBe('tile; cache=miss');
    expect(second.headers['x-iiif-render']).toBe('tile; cache=hit');
    expect(second.rawPayload.equals(first.rawPayload)).toBe(true);
  });

  it('concurrent identical requests render once', async () => {
    const url = '/iiif/3/gradient.tif/full/!400,400/33/default.png';
    const responses = await Promise.all(Array.from({ length: 10 }, () => get(url)));
    const outcomes = responses.map((r) => r.headers['x-iiif-render']);
    expect(outcomes.filter((o) => o === 'tile; cache=miss')).toHaveLength(1);
    expect(outcomes.filter((o) => o === 'tile; cache=shared')).toHaveLength(9);
    const metrics = (await get('/metrics')).body;
    expect(metrics).toMatch(/iiif_result_cache_lookups_total\{result="shared"\} 9/);
    expect(metrics).toMatch(/^iiif_result_cache_bytes [1-9]\d*$/m);
  });

  it('a changed source is rendered again once the source is rechecked (the key carries the source version)', async () => {
    const { writeFile } = await import('node:fs/promises');
    const { join } = await import('node:path');
    const path = join(root, 'changing.png');
    await sharp({ create: { width: 64, height: 64, channels: 3, background: '#f00' } }).png().toFile(path);
    const before = await get('/iiif/3/changing.png/full/max/0/default.png');
    await writeFile(path, await sharp({ create: { width: 64, height: 64, channels: 3, background: '#00f' } }).png().toBuffer());
    // Change the mtime for sure: same-second writes would otherwise keep the version.
    const { utimes } = await import('node:fs/promises');
    await utimes(path, new Date(), new Date(Date.now() + 5000));
    // Within IIIF_SOURCE_RECHECK_MS the old answer stands; after it, the change is seen.
    expect((await get('/iiif/3/changing.png/full/max/0/default.png')).headers.etag).toBe(before.headers.etag);
    await new Promise((resolve) => setTimeout(resolve, 150));
    const after = await get('/iiif/3/changing.png/full/max/0/default.png');
    expect(near(await pixel(before.rawPayload, 5, 5), [255, 0, 0])).toBe(true);
    expect(near(await pixel(after.rawPayload, 5, 5), [0, 0, 255])).toBe(true);
    expect(after.headers.etag).not.toBe(before.headers.etag);
  });
});

describe('memory budget and lanes', () => {
  /** A cut of large stored tiles, sent behind 35 queued renders with one slot: it must finish last. */
  const cutWaitsInLane = async (native: boolean) => {
    // Grain at quality 85: four 256-px tiles of about 50 KB each, more than a quick cut reads.
    await sharp({ create: { width: 1024, height: 512, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 50 } } })
      .tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg', quality: 85 })
      .toFile(join(root, 'grain.tif'));
    const lane = await appFor(root, { IIIF_RENDER_CONCURRENCY: '1', IIIF_RESULT_CACHE_BYTES: '0', IIIF_NATIVE_JPEG: String(native) });
    try {
      for (const name of ['gradient.tif', 'grain.tif']) await lane.inject({ url: `/iiif/3/${name}/info.json` }); // metadata cached: requests reach admission at once
      const finished: string[] = [];
      const request = (name: string, url: string) =>
        lane.inject({ url }).then((response) => {
          finished.push(name);
          return response;
        });
      // Tiles rendered by sharp (turned), one at a time, enough of them to keep others waiting.
      const renders = Array.from({ length: 35 }, (_, i) => request(`render ${i}`, `/iiif/3/gradient.tif/${(i % 7) * 256},${Math.floor(i / 7) * 256},256,256/256,256/90/default.png`));
      for (;;) {
        const metrics = (await lane.inject({ url: '/metrics' })).body;
        if (/iiif_admission_queue_depth\{lane="cheap"\} ([5-9]|\d\d)/.test(metrics)) break;
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
      // Starts on the tiles' block grid, across four stored tiles: a lossless cut, no decode.
      const cut = await request('cut', '/iiif/3/grain.tif/128,128,256,256/256,256/0/default.jpg');
      expect(new Set((await Promise.all(renders)).map((response) => response.statusCode))).toEqual(new Set([200]));
      expect([cut.statusCode, cut.headers['x-iiif-render']]).toEqual([200, 'cut; cache=miss']);
      // Everything that arrived before it was served first: nothing overtakes the queued renders.
      expect(finished.at(-1)).toBe('cut');
    } finally {
      await lane.close();
    }
  };

  it.runIf(nativeJpegAvailable())('a cut of large stored tiles waits in the cheap lane behind the renders that queued before it', () => cutWaitsInLane(true));
  it('so does a cut in JavaScript (IIIF_NATIVE_JPEG=false)', () => cutWaitsInLane(false));

  it('refuses at once (413) a request that could never fit the render memory budget', async () => {
    const small = await appFor(root, { IIIF_RENDER_MEMORY_BYTES: String(8 * 1024 * 1024) });
    try {
      const response = await small.inject({ url: '/iiif/3/gradient.tif/full/max/0/default.jpg' });
      expect(response.statusCode).toBe(413);
      expect(response.body).toMatch(/needs about \d+ MiB to render as jpg, more than the 8 MiB allowed/);
      expect((await small.inject({ method: 'HEAD', url: '/iiif/3/gradient.tif/full/max/0/default.jpg' })).statusCode).toBe(413);
      // A tile from a small level fits.
      expect((await small.inject({ url: '/iiif/3/gradient.tif/full/250,/0/default.jpg' })).statusCode).toBe(200);
    } finally {
      await small.close();
    }
  });

  it('a saturated large-render lane answers 503 with Retry-After while tiles still succeed', async () => {
    const busy = await appFor(root, {
      IIIF_LARGE_RENDER_CONCURRENCY: '1',
      IIIF_LARGE_RENDER_QUEUE: '0',
      IIIF_LARGE_RENDER_PIXELS: '100000',
      IIIF_RESULT_CACHE_BYTES: '0',
    });
    try {
      await busy.inject({ url: '/iiif/3/gradient.tif/info.json' }); // metadata cached: requests reach admission at once
      const big = (angle: number) => busy.inject({ url: `/iiif/3/gradient.tif/full/^3000,/${angle}/default.png` });
      const tile = busy.inject({ url: '/iiif/3/gradient.tif/0,0,512,512/256,256/0/default.jpg' });
      const responses = await Promise.all([big(11), big(12), big(13), big(14)]);
      const statuses = responses.map((r) => r.statusCode).sort();
      expect(statuses[0]).toBe(200);
      expect(statuses).toContain(503);
      const rejected = responses.find((r) => r.statusCode === 503)!;
      expect(rejected.headers['retry-after']).toBe('5');
      expect(rejected.body).toMatch(/busy/);
      expect((await tile).statusCode).toBe(200);
      const metrics = (await busy.inject({ url: '/metrics' })).body;
      expect(metrics).toMatch(/iiif_admission_rejections_total\{lane="expensive",reason="queue-full"\} [1-3]/);
    } finally {
      await busy.close();
    }
  });
});
