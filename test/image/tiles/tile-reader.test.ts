import { copyFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { standaloneJpeg } from '../../../src/image/tiles/jpeg-tile.js';
import { readTiffLayout, type TiffPage } from '../../../src/image/tiles/tiff-layout.js';
import { TileReader } from '../../../src/image/tiles/tile-reader.js';
import { makeFixtures } from '../../fixtures.js';

let a: string;
let b: string;
let pages: TiffPage[];

beforeAll(async () => {
  const { root } = await makeFixtures();
  a = join(root, 'gradient.tif');
  b = join(root, 'gradient-copy.tif');
  await copyFile(a, b);
  pages = (await readTiffLayout(a))!;
});

describe('tile reader', () => {
  it('shares open files between concurrent reads and survives evicting files in use', async () => {
    // One open file at most, two files read concurrently: every read evicts the other file,
    // often while a read of it is still running.
    const reader = new TileReader(1);
    const reads = Array.from({ length: 200 }, (_, i) => reader.read(i % 2 ? a : b, 'v1', pages[0]!, i % 48));
    const tiles = await Promise.all(reads);
    for (const tile of tiles.slice(0, 10)) expect((await sharp(standaloneJpeg(tile, pages[0]!)).metadata()).width).toBe(256);
    expect(tiles[2]!.equals(tiles[3]!)).toBe(false);
    expect(tiles[4]!.equals((await reader.read(b, 'v1', pages[0]!, 4)))).toBe(true);
  });

  it('refuses a tile whose bytes are missing with 422', async () => {
    const broken: TiffPage = { ...pages[0]!, tileOffsets: [...pages[0]!.tileOffsets], tileByteCounts: [...pages[0]!.tileByteCounts] };
    broken.tileOffsets[0] = 1e9; // beyond the end of the file
    await expect(new TileReader(2).read(a, 'v1', broken, 0)).rejects.toMatchObject({ statusCode: 422 });
  });
});
