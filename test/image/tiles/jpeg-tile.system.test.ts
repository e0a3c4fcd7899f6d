import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { jpegColour, standaloneJpeg } from '../../../src/image/tiles/jpeg-tile.js';
import { readTiffLayout, type TiffPage } from '../../../src/image/tiles/tiff-layout.js';
import { readStoredTile } from '../../../src/image/tiles/tile-reader.js';
import { decode, difference, FOREIGN, libtiffPage, makeForeignPyramids } from './foreign-pyramids.js';
import { localFile } from '../local-file.js';

let folder: string;
beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'foreign-'));
  await makeForeignPyramids(folder);
}, 120_000);

describe('stored tiles made standalone', () => {
  for (const foreign of FOREIGN) {
    it(`decode to libtiff's pixels: ${foreign.writer}`, async () => {
      const path = join(folder, foreign.name);
      const pages = (await readTiffLayout((await localFile(path)).reader))!;
      expect(pages.length).toBeGreaterThan(0);
      expect(pages[0]).toMatchObject({ photometric: foreign.photometric, tileWidth: foreign.tileSize });
      const reader = (await localFile(path)).reader;
      const worst = { mean: 0, max: 0 };
      for (const [number, page] of pages.entries()) {
        const reference = await libtiffPage(path, number, folder);
        const columns = Math.ceil(page.width / page.tileWidth);
        for (let index = 0; index < page.tileOffsets.length; index++) {
          const jpeg = standaloneJpeg(await readStoredTile(reader, page, index), page);
          expect(jpeg, `page ${number} tile ${index}`).toBeDefined();
          // RGB says so in an Adobe marker (transform 0) right after SOI, whatever the tile carried.
          expect(jpeg!.subarray(0, 4).toString('hex') === 'ffd8ffee' && jpeg![17] === 0).toBe(foreign.photometric === 2);
          const tile = await decode(jpeg!);
          expect([tile.width, tile.height, tile.channels]).toEqual([page.tileWidth, page.tileHeight, foreign.photometric === 1 ? 1 : 3]);
          const { mean, max } = difference(tile, reference, (index % columns) * page.tileWidth, Math.floor(index / columns) * page.tileHeight);
          worst.mean = Math.max(worst.mean, mean);
          worst.max = Math.max(worst.max, max);
        }
      }
      // Two JPEG decoders (libjpeg-turbo in libtiff, mozjpeg in sharp) on the same data: they
      // differ in rounding and chroma upsampling only. A wrong colour transform is off by tens.
      expect(worst.mean).toBeLessThan(1);
      expect(worst.max).toBeLessThan(16);
    });
  }
});

describe('what stays with libtiff', () => {
  let page: TiffPage;
  let tile: Buffer;
  beforeAll(async () => {
    const path = join(folder, 'vips-rgb.tif');
    page = (await readTiffLayout((await localFile(path)).reader))![0]!;
    tile = await readStoredTile((await localFile(path)).reader, page, 0);
  });

  it('pages whose tiles no JPEG decoder reads like libtiff: CMYK, alpha, 12-bit, planes, white-is-zero, old-style JPEG, signed', () => {
    expect(jpegColour(page)).toBe('rgb');
    const refused: Array<Partial<TiffPage>> = [
      { photometric: 5, samplesPerPixel: 4 },
      { samplesPerPixel: 4, extraSamples: 1 },
      { bitsPerSample: 12 },
      { bitsPerSample: 0 },
      { planarConfig: 2 },
      { photometric: 0, samplesPerPixel: 1 },
      { photometric: 8 },
      { compression: 6 },
      { sampleFormat: 2 },
      { photometric: 2, samplesPerPixel: 1 },
    ];
    for (const change of refused) {
      expect(jpegColour({ ...page, ...change }), JSON.stringify(change)).toBeUndefined();
      expect(standaloneJpeg(tile, { ...page, ...change }), JSON.stringify(change)).toBeUndefined();
    }
  });

  it('coding no browser decodes (arithmetic, lossless, hierarchical, 12-bit) is left to libtiff', () => {
    const sof = tile.indexOf(Buffer.from([0xff, 0xc0]));
    const frame = (marker: number, precision = 8) =>
      Buffer.concat([tile.subarray(0, sof + 1), Buffer.from([marker, tile[sof + 2]!, tile[sof + 3]!, precision]), tile.subarray(sof + 5)]);
    expect(standaloneJpeg(frame(0xc1), page)).toBeDefined(); // extended sequential: decodable
    for (const marker of [0xc3, 0xc5, 0xc9, 0xca]) expect(standaloneJpeg(frame(marker), page), marker.toString(16)).toBeUndefined();
    expect(standaloneJpeg(frame(0xc0, 12), page)).toBeUndefined();
  });

  it('a tile that is not the whole JPEG its tags describe is refused with 422: truncated, another size, no tables, garbage', () => {
    expect(standaloneJpeg(tile, page)).toBeDefined();
    // Padding after the end of the image is allowed.
    expect(standaloneJpeg(Buffer.concat([tile, Buffer.alloc(3)]), page)!.equals(standaloneJpeg(tile, page)!)).toBe(true);
    const cases: Record<string, [Buffer, TiffPage]> = {
      truncated: [tile.subarray(0, tile.length - 100), page],
      'no EOI': [tile.subarray(0, -2), page],
      empty: [Buffer.alloc(0), page],
      zeros: [Buffer.alloc(4096), page],
      'TIFF header instead': [Buffer.concat([Buffer.from('II*\u0000'), tile]), page],
      'tile width lies': [tile, { ...page, tileWidth: 512 }],
      'tile height lies': [tile, { ...page, tileHeight: 128 }],
      'no quantisation tables': [tile, { ...page, jpegTables: Buffer.from([0xff, 0xd8, 0xff, 0xd9]) }],
      'tables that are an image': [tile, { ...page, jpegTables: tile }],
      'tables cut short': [tile, { ...page, jpegTables: page.jpegTables!.subarray(0, 40) }],
    };
    for (const [name, [bytes, described]] of Object.entries(cases)) {
      expect(() => standaloneJpeg(bytes, described), name).toThrow(expect.objectContaining({ statusCode: 422 }));
    }
  });

  it('damaged headers never throw anything but 422', () => {
    const headers = tile.indexOf(Buffer.from([0xff, 0xda])) + 12;
    for (let at = 0; at < headers; at++) {
      for (const value of [0x00, 0xff, tile[at]! ^ 0x80]) {
        const damaged = Buffer.from(tile);
        damaged[at] = value;
        try {
          standaloneJpeg(damaged, page);
        } catch (error) {
          expect(error).toMatchObject({ statusCode: 422 });
        }
      }
    }
  });
});
