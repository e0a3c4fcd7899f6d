import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { probe } from '../../../src/image/metadata/probe.js';
import { listedLevels } from '../../../src/image/metadata/stored-levels.js';
import { buildPyramid, wantsPyramid } from '../../../src/image/pyramid/convert.js';
import { readTiffLayout } from '../../../src/image/tiles/tiff-layout.js';
import { BLUE, expectQuadrantColours, makeFixtures, near, pixel, quadrants, RED } from '../../fixtures.js';
import { allLevels, localFile } from '../local-file.js';

let root: string;
const options = { tileSize: 256, quality: 85, maxInputPixels: 100_000_000 };

beforeAll(async () => {
  ({ root } = await makeFixtures());
});

async function quadrantsRaw(width: number, height: number) {
  return sharp(await quadrants()).resize(width, height, { fit: 'fill', kernel: 'nearest' }).removeAlpha().raw().toBuffer();
}

describe('pyramid conversion', () => {
  it('only converts single-level images above the threshold', () => {
    const full = { width: 4000, height: 4000, page: 0, tiles: undefined };
    const flat = { width: 4000, height: 4000, levels: listedLevels([full]) };
    expect(wantsPyramid(flat, 16_000_000)).toBe(true);
    expect(wantsPyramid(flat, 16_000_001)).toBe(false);
    expect(wantsPyramid({ ...flat, levels: listedLevels([full, { width: 2000, height: 2000, page: 1, tiles: undefined }]) }, 1)).toBe(false);
  });

  it('turns a plain JPEG into a tiled JPEG pyramid with the same pixels', async () => {
    const source = join(root, 'flat.jpg');
    await sharp(await quadrantsRaw(3000, 2000), { raw: { width: 3000, height: 2000, channels: 3 } }).jpeg({ quality: 95 }).toFile(source);
    const target = join(root, 'flat.pyr.tif');
    await buildPyramid(source, target, options);
    const meta = await probe(await localFile(target), options.maxInputPixels);
    expect((await allLevels(meta.levels)).map((l) => [l.width, l.height])).toEqual([[3000, 2000], [1500, 1000], [750, 500], [375, 250], [187, 125]]);
    const pages = (await readTiffLayout((await localFile(target)).reader))!;
    expect(pages[0]).toMatchObject({ tileWidth: 256, compression: 7, photometric: 6 });
    await expectQuadrantColours(await sharp(target).png().toBuffer());
  });

  it('keeps transparency (lossless tiles) and bakes in EXIF orientation', async () => {
    const alpha = join(root, 'alpha.pyr.tif');
    await buildPyramid(join(root, 'alpha.png'), alpha, options);
    expect((await sharp(alpha).metadata()).hasAlpha).toBe(true);
    expect((await readTiffLayout((await localFile(alpha)).reader))![0]!.compression).toBe(8); // deflate
    const turned = join(root, 'rotated.pyr.tif');
    await buildPyramid(join(root, 'rotated.jpg'), turned, options);
    const meta = await sharp(turned).metadata();
    expect([meta.width, meta.height, meta.orientation ?? 1]).toEqual([200, 100, 1]);
    const png = await sharp(turned).png().toBuffer();
    expect(near(await pixel(png, 50, 50), BLUE)).toBe(true);
    expect(near(await pixel(png, 150, 50), RED)).toBe(true);
  });
});
