import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { standaloneJpeg } from '../../../src/image/tiles/jpeg-tile.js';
import { readTiffLayout } from '../../../src/image/tiles/tiff-layout.js';
import { TileReader } from '../../../src/image/tiles/tile-reader.js';
import { gradientColour, makeFixtures, near, pixel } from '../../fixtures.js';

let root: string;
beforeAll(async () => {
  ({ root } = await makeFixtures());
});

describe('TIFF layout', () => {
  it('reads every level of a libvips pyramid with its tile grid and JPEG tables', async () => {
    const pages = (await readTiffLayout(join(root, 'gradient.tif')))!;
    expect(pages.map((p) => [p.width, p.height])).toEqual([
      [2000, 1500],
      [1000, 750],
      [500, 375],
      [250, 187],
    ]);
    for (const page of pages) {
      // At quality ≥ 90 libvips stores RGB JPEG tiles.
      expect(page).toMatchObject({ tileWidth: 256, tileHeight: 256, compression: 7, photometric: 2, samplesPerPixel: 3, bitsPerSample: 8, sampleFormat: 1, extraSamples: 0 });
      expect(page.tileOffsets).toHaveLength(Math.ceil(page.width / 256) * Math.ceil(page.height / 256));
      expect(page.jpegTables?.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    }
  });

  it('YCbCr tiles below quality 90', async () => {
    const path = join(root, 'ycbcr.tif');
    await sharp(join(root, 'quadrants.png')).resize(1024, 1024).tiff({ tile: true, pyramid: true, compression: 'jpeg', quality: 80 }).toFile(path);
    const pages = (await readTiffLayout(path))!;
    expect(pages[0]).toMatchObject({ photometric: 6, samplesPerPixel: 3 });
  });

  it('a stored tile made standalone is a complete JPEG of that tile', async () => {
    const pages = (await readTiffLayout(join(root, 'gradient.tif')))!;
    // Level 0, column 2, row 1: full-resolution pixels x 512–767, y 256–511.
    const jpeg = standaloneJpeg(await new TileReader(4).read(join(root, 'gradient.tif'), 'v1', pages[0]!, 1 * 8 + 2), pages[0]!)!;
    const meta = await sharp(jpeg).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 256, 256]);
    expect(near(await pixel(jpeg, 128, 128), gradientColour(640, 384), 6)).toBe(true);
  });

  it('answers undefined, never throws, for files it does not understand', async () => {
    const chart = await readFile(join(root, 'quadrants.png'));
    const tiff = await readFile(join(root, 'gradient.tif'));
    const cases: Record<string, Buffer> = {
      'png.tif': chart,
      'empty.tif': Buffer.alloc(0),
      'header-only.tif': tiff.subarray(0, 8),
      'truncated.tif': tiff.subarray(0, 4000),
      'garbage.tif': Buffer.concat([Buffer.from('II*\u0000'), Buffer.from([0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(64, 0xff)]),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      await writeFile(join(root, name), bytes);
      expect(await readTiffLayout(join(root, name)), name).toBeUndefined();
    }
    // A strip (untiled) TIFF has no tile layout either.
    expect(await readTiffLayout(join(root, 'chart.tif'))).toBeUndefined();
  });
});
