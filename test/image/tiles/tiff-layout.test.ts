import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { sourceUnavailable } from '../../../src/errors.js';
import { standaloneJpeg } from '../../../src/image/tiles/jpeg-tile.js';
import { readTiffLayout, TiffLayout } from '../../../src/image/tiles/tiff-layout.js';
import { readStoredTile } from '../../../src/image/tiles/tile-reader.js';
import { bufferReader, type RangeReader } from '../../../src/source/range-reader.js';
import { gradientColour, makeFixtures, near, pixel } from '../../fixtures.js';
import { localFile } from '../local-file.js';

let root: string;
beforeAll(async () => {
  ({ root } = await makeFixtures());
});

const layoutOf = async (name: string) => readTiffLayout((await localFile(join(root, name))).reader);

/** A reader over bytes in memory that records every range read, and can be made to fail. */
function recording(bytes: Buffer): RangeReader & { reads: Array<[number, number]>; failNext: boolean } {
  const inner = bufferReader(bytes);
  const reader = {
    size: inner.size,
    reads: [] as Array<[number, number]>,
    failNext: false,
    read: async (offset: number, length: number) => {
      if (reader.failNext) {
        reader.failNext = false;
        throw sourceUnavailable('the store is down', 5);
      }
      reader.reads.push([offset, length]);
      return inner.read(offset, length);
    },
  };
  return reader;
}

describe('TIFF layout', () => {
  it('reads every level of a libvips pyramid with its tile grid and JPEG tables', async () => {
    const pages = (await layoutOf('gradient.tif'))!;
    expect(pages.map((p) => [p.width, p.height])).toEqual([
      [2000, 1500],
      [1000, 750],
      [500, 375],
      [250, 187],
    ]);
    for (const page of pages) {
      // At quality ≥ 90 libvips stores RGB JPEG tiles.
      expect(page).toMatchObject({ tileWidth: 256, tileHeight: 256, compression: 7, photometric: 2, samplesPerPixel: 3, bitsPerSample: 8, sampleFormat: 1, extraSamples: 0, orientation: 1 });
      expect(page.tileOffsets).toHaveLength(Math.ceil(page.width / 256) * Math.ceil(page.height / 256));
      expect(page.jpegTables?.subarray(0, 2)).toEqual(Buffer.from([0xff, 0xd8]));
    }
  });

  it('YCbCr tiles below quality 90', async () => {
    const path = join(root, 'ycbcr.tif');
    await sharp(join(root, 'quadrants.png')).resize(1024, 1024).tiff({ tile: true, pyramid: true, compression: 'jpeg', quality: 80 }).toFile(path);
    const pages = (await layoutOf('ycbcr.tif'))!;
    expect(pages[0]).toMatchObject({ photometric: 6, samplesPerPixel: 3 });
  });

  it('a stored tile made standalone is a complete JPEG of that tile', async () => {
    const file = await localFile(join(root, 'gradient.tif'));
    const pages = (await readTiffLayout(file.reader))!;
    // Level 0, column 2, row 1: full-resolution pixels x 512–767, y 256–511.
    const jpeg = standaloneJpeg(await readStoredTile(file.reader, pages[0]!, 1 * 8 + 2), pages[0]!)!;
    const meta = await sharp(jpeg).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(['jpeg', 256, 256]);
    expect(near(await pixel(jpeg, 128, 128), gradientColour(640, 384), 6)).toBe(true);
  });

  it('refuses a tile whose bytes are missing with 422', async () => {
    const file = await localFile(join(root, 'gradient.tif'));
    const page = (await readTiffLayout(file.reader))![0]!;
    const broken = { ...page, tileOffsets: [1e9, ...page.tileOffsets.slice(1)] }; // beyond the end of the file
    await expect(readStoredTile(file.reader, broken, 0)).rejects.toMatchObject({ statusCode: 422 });
  });

  it('opens with the first directory only, and reads a later one when it is first asked for', async () => {
    const reader = recording(await readFile(join(root, 'gradient.tif')));
    const layout = (await TiffLayout.open(reader))!;
    expect([layout.first.width, layout.hasMorePages]).toEqual([2000, true]);
    const opened = reader.reads.length;
    expect(Math.max(...reader.reads.map(([offset]) => offset))).toBeLessThan((await layout.page(1))!.tileOffsets[0]!);
    expect(reader.reads.length).toBeGreaterThan(opened);
    const afterPage1 = reader.reads.length;
    // Asked for again, or concurrently: read once.
    await Promise.all([layout.page(1), layout.page(1)]);
    expect(reader.reads.length).toBe(afterPage1);
    expect((await layout.page(3))!.width).toBe(250);
    expect(await layout.page(4)).toBeUndefined();
    expect(await layout.page(99)).toBeUndefined();
  });

  it('reads the tail of the file at once when a directory lies near the end (where the small levels are)', async () => {
    const bytes = await readFile(join(root, 'gradient.tif'));
    const reader = recording(bytes);
    const layout = (await TiffLayout.open(reader))!;
    await layout.page(3);
    const tail = reader.reads.filter(([offset, length]) => offset + length === bytes.length && length > 1024);
    expect(tail).toHaveLength(1);
    expect(tail[0]![1]).toBeLessThanOrEqual(256 * 1024);
  });

  it('passes on a store failure without remembering it: the next ask reads again', async () => {
    const reader = recording(await readFile(join(root, 'gradient.tif')));
    const layout = (await TiffLayout.open(reader))!;
    reader.failNext = true;
    await expect(layout.page(2)).rejects.toMatchObject({ statusCode: 503 });
    expect((await layout.page(2))!.width).toBe(500);
    reader.failNext = true;
    await expect(TiffLayout.open(reader)).rejects.toMatchObject({ statusCode: 503 });
  });

  it('ends a directory chain that loops back on itself', async () => {
    const bytes = Buffer.from(await readFile(join(root, 'gradient.tif')));
    const first = bytes.readUInt32LE(4);
    const count = bytes.readUInt16LE(first);
    bytes.writeUInt32LE(first, first + 2 + count * 12); // page 0's "next" points at page 0
    const pages = (await readTiffLayout(bufferReader(bytes)))!;
    expect(pages).toHaveLength(1);
  });

  it('answers undefined, never throws, for files it does not understand', async () => {
    const chart = await readFile(join(root, 'quadrants.png'));
    const tiff = await readFile(join(root, 'gradient.tif'));
    const cases: Record<string, Buffer> = {
      'png.tif': chart,
      'empty.tif': Buffer.alloc(0),
      'header-only.tif': tiff.subarray(0, 8),
      'truncated.tif': tiff.subarray(0, 4000),
      'no-directory.tif': Buffer.from('II*\u0000\u0000\u0000\u0000\u0000', 'latin1'),
      'garbage.tif': Buffer.concat([Buffer.from('II*\u0000'), Buffer.from([0xff, 0xff, 0xff, 0x7f]), Buffer.alloc(64, 0xff)]),
    };
    for (const [name, bytes] of Object.entries(cases)) {
      await writeFile(join(root, name), bytes);
      expect(await layoutOf(name), name).toBeUndefined();
    }
    // A strip (untiled) TIFF has no tile layout either.
    expect(await layoutOf('chart.tif')).toBeUndefined();
  });
});
