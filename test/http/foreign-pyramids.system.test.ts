import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tilePaths } from '../../bench/workloads.js';
import { decode, difference, FOREIGN, libtiffPage, makeForeignPyramids, type Raster } from '../image/tiles/foreign-pyramids.js';
import { appFor } from './helpers.js';

let folder: string;
let app: FastifyInstance;
/** The same server with the native JPEG tile renderer turned off: what sharp makes of the same requests. */
let sharpApp: FastifyInstance;
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'foreign-http-'));
  await makeForeignPyramids(folder);
  app = await appFor(folder);
  sharpApp = await appFor(folder, { IIIF_NATIVE_JPEG: 'false' });
}, 120_000);
afterAll(async () => {
  await app?.close();
  await sharpApp?.close();
});

describe('deep-zoom tiles of pyramids this project did not make', () => {
  for (const foreign of FOREIGN) {
    it(`${foreign.writer}: stored tiles sent as they are, with libtiff's pixels`, async () => {
      const info = (await app.inject({ url: `/iiif/3/${foreign.name}/info.json` })).json<{ width: number; height: number }>();
      const references = new Map<number, Raster>();
      const methods: Record<string, number> = {};
      for (const path of tilePaths(info, 256, 3)) {
        const response = await app.inject({ url: `/iiif/3/${foreign.name}/${path}` });
        expect(response.statusCode, `${path}: ${response.body.slice(0, 200)}`).toBe(200);
        const method = String(response.headers['x-iiif-render']).split(';')[0]!;
        methods[method] = (methods[method] ?? 0) + 1;
        if (method !== 'passthrough' && method !== 'cut') continue;
        // Neither decoded nor re-encoded: the pixels are libtiff's for that part of the level.
        const level = Number(response.headers['x-iiif-source-level']);
        if (!references.has(level)) references.set(level, await libtiffPage(join(folder, foreign.name), level, folder));
        const [x, y] = path.split('/')[0]!.split(',').map(Number);
        const scale = 2 ** level;
        const { mean, max } = difference(await decode(response.rawPayload), references.get(level)!, x! / scale, y! / scale);
        expect(mean, path).toBeLessThan(1);
        // A cut's new edges and seams lack their chroma neighbours, which upsampling blends in.
        if (method === 'passthrough') expect(max, path).toBeLessThan(16);
      }
      // 1500×1100 in 256-px viewer tiles: 44 requests, 25 whole stored tiles and 18 edge tiles at
      // stored levels; the last (188×138) has no level of its own. 128-px stored tiles are cut
      // four at a time. cjpeg's file has one level: the other scales decode it.
      const expected: Record<string, Record<string, number>> = {
        'vips-default.tif': { cut: 43, tile: 1 },
        'cjpeg-422-restart.tif': { passthrough: 2, cut: 4, tile: 3 },
      };
      expect(methods).toEqual(expected[foreign.name] ?? { passthrough: 25, cut: 18, tile: 1 });
    });
  }
});

/** Baseline sequential (SOF0) and no other frame type: what every decoder reads. */
function isBaselineJpeg(jpeg: Buffer): boolean {
  let at = 2;
  while (at + 4 <= jpeg.length && jpeg[0] === 0xff && jpeg[1] === 0xd8) {
    const marker = jpeg[at + 1]!;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return marker === 0xc0;
    at += 2 + jpeg.readUInt16BE(at + 2);
  }
  return false;
}

describe('300-px viewer tiles across stored tiles of pyramids this project did not make', () => {
  for (const foreign of FOREIGN) {
    it(`${foreign.writer}: decoded natively to libtiff's pixels, as sharp decodes them`, async () => {
      const info = (await app.inject({ url: `/iiif/3/${foreign.name}/info.json` })).json<{ width: number; height: number }>();
      const references = new Map<number, Raster>();
      let native = 0;
      for (const path of tilePaths(info, 300, 3)) {
        const [ours, theirs] = await Promise.all([app.inject({ url: `/iiif/3/${foreign.name}/${path}` }), sharpApp.inject({ url: `/iiif/3/${foreign.name}/${path}` })]);
        expect(ours.statusCode, `${path}: ${ours.body.slice(0, 200)}`).toBe(200);
        expect(theirs.statusCode, path).toBe(200);
        const method = String(ours.headers['x-iiif-render']).split(';')[0]!;
        expect(String(theirs.headers['x-iiif-render'])).not.toMatch(/^libjpeg/);
        if (method !== 'libjpeg') continue;
        native++;
        expect(isBaselineJpeg(ours.rawPayload), path).toBe(true);
        const [decoded, bySharp] = await Promise.all([decode(ours.rawPayload), decode(theirs.rawPayload)]);
        // Exactly the requested size: the same as the sharp path's.
        expect([decoded.width, decoded.height], path).toEqual([bySharp.width, bySharp.height]);
        const level = Number(ours.headers['x-iiif-source-level']);
        if (!references.has(level)) references.set(level, await libtiffPage(join(folder, foreign.name), level, folder));
        const [x, y] = path.split('/')[0]!.split(',').map(Number);
        const scale = 2 ** level;
        // Decoded once and encoded once at quality 85, like the sharp path: as near libtiff's
        // pixels as sharp's answer is, and near sharp's answer itself.
        const reference = references.get(level)!;
        const ourError = difference(decoded, reference, x! / scale, y! / scale).mean;
        const sharpError = difference(bySharp, reference, x! / scale, y! / scale).mean;
        expect(ourError, path).toBeLessThan(sharpError + 0.25);
        expect(difference(decoded, bySharp, 0, 0).mean, path).toBeLessThan(1.5);
      }
      // Every 300-px tile whose region is at a stored level's own scale (all but the smallest
      // ones, and those of cjpeg's single-level file) and not on the block grid.
      expect(native, foreign.name).toBeGreaterThan(foreign.name.startsWith('cjpeg') ? 0 : 10);
    });
  }
});
