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
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'foreign-http-'));
  await makeForeignPyramids(folder);
  app = await appFor(folder);
}, 120_000);
afterAll(() => app?.close());

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
