import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { IiifError } from '../../../src/errors.js';
import { decodeOffThread } from '../../../src/image/jp2/off-thread.js';
import { codestreamOf, decodeJpeg2000 } from '../../../src/image/jp2/wasm.js';
import { probe } from '../../../src/image/metadata/probe.js';
import { listedLevels } from '../../../src/image/metadata/stored-levels.js';
import { buildPyramid, wantsPyramid } from '../../../src/image/pyramid/convert.js';
import { readTiffLayout } from '../../../src/image/tiles/tiff-layout.js';
import { BLUE, expectQuadrantColours, makeFixtures, near, pixel, quadrants, RED } from '../../fixtures.js';
import { encodeJ2k, jp2Container } from '../../j2k.js';
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

  it.each([
    ['a bare J2K codestream', false],
    ['a JP2 file', true],
  ])('converts JPEG 2000 (%s) with the right pixels', async (_name, boxed) => {
    const [w, h] = [600, 400];
    const stream = await encodeJ2k(await quadrantsRaw(w, h), w, h, 3);
    const source = join(root, boxed ? 'image.jp2' : 'image.j2k');
    await writeFile(source, boxed ? jp2Container(stream, w, h, 3) : stream);
    const target = `${source}.pyr.tif`;
    await buildPyramid(source, target, options);
    expect(await allLevels((await probe(await localFile(target), options.maxInputPixels)).levels)).toHaveLength(3);
    await expectQuadrantColours(await sharp(target).png().toBuffer());
  });

  it('converts a 16-bit grey JPEG 2000 to 8-bit', async () => {
    const [w, h] = [300, 200];
    const raw = Buffer.alloc(w * h * 2);
    for (let i = 0; i < w * h; i++) raw.writeUInt16LE(i % w < w / 2 ? 0 : 65535, i * 2);
    const source = join(root, 'grey16.j2k');
    await writeFile(source, await encodeJ2k(raw, w, h, 1, 16));
    const target = `${source}.pyr.tif`;
    await buildPyramid(source, target, options);
    const png = await sharp(target).png().toBuffer();
    expect((await pixel(png, 50, 100))[0]).toBeLessThan(20);
    expect((await pixel(png, 250, 100))[0]).toBeGreaterThan(235);
    expect((await sharp(png).metadata()).depth).toBe('uchar');
  });

  it('decodes JPEG 2000 off the event loop: timers keep firing while it runs', async () => {
    const [w, h] = [1600, 1200];
    const noisy = await sharp({ create: { width: w, height: h, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 50 } } }).raw().toBuffer();
    const stream = await encodeJ2k(noisy, w, h, 3);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    try {
      // Nothing is awaited between here and the decode: a decode on this thread would let no tick in.
      const { pixels } = await decodeOffThread(stream);
      expect(ticks).toBeGreaterThan(0);
      expect(Buffer.from(pixels).equals(noisy)).toBe(true);
    } finally {
      clearInterval(timer);
    }
    const path = join(root, 'busy.j2k');
    await writeFile(path, stream);
    expect((await decodeJpeg2000(path, options.maxInputPixels)).data.equals(noisy)).toBe(true);
  });

  it('refuses a JPEG 2000 whose header declares too many pixels, before decoding', async () => {
    const stream = await encodeJ2k(await quadrantsRaw(64, 64), 64, 64, 3);
    // SIZ segment: FF4F FF51 Lsiz Rsiz Xsiz Ysiz …: declare 60000×60000.
    const bomb = Buffer.from(stream);
    bomb.writeUInt32BE(60_000, 8);
    bomb.writeUInt32BE(60_000, 12);
    const path = join(root, 'bomb.j2k');
    await writeFile(path, bomb);
    await expect(decodeJpeg2000(path, options.maxInputPixels)).rejects.toMatchObject({ statusCode: 413 });
  });

  it('refuses broken JPEG 2000 with a clear 422', async () => {
    const path = join(root, 'broken.jp2');
    await writeFile(path, Buffer.concat([Buffer.from([0, 0, 0, 12]), Buffer.from('jP  \r\n\u0087\n', 'latin1'), Buffer.alloc(100, 7)]));
    const error = await decodeJpeg2000(path, options.maxInputPixels).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IiifError);
    expect((error as IiifError).statusCode).toBe(422);
    expect(() => codestreamOf(Buffer.alloc(3))).toThrow(/no codestream/);
  });
});
