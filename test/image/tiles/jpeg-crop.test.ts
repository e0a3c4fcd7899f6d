import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { cropJpegCorner } from '../../../src/image/tiles/jpeg-crop.js';

/** Photograph-like texture: smoothed noise, so every block has real AC coefficients. */
async function texture(width: number, height: number, channels: 1 | 3): Promise<Buffer> {
  const colour = await sharp({ create: { width, height, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 70 } } })
    .blur(1.1)
    .png()
    .toBuffer();
  return channels === 3 ? colour : sharp(colour).extractChannel(0).png().toBuffer();
}

const raw = (jpeg: Buffer) => sharp(jpeg).raw().toBuffer({ resolveWithObject: true });

/**
 * Largest channel difference between the cut JPEG and the stored JPEG decoded then cropped,
 * inside the cut and on its last column and row (where chroma upsampling lacks its right or
 * lower neighbour, so a libjpeg decoder may interpolate differently).
 */
async function compare(stored: Buffer, cut: Buffer, width: number, height: number) {
  const ours = await raw(cut);
  const reference = await sharp(stored).extract({ left: 0, top: 0, width, height }).raw().toBuffer();
  const { channels } = ours.info;
  let inner = 0;
  let border = 0;
  for (let i = 0; i < reference.length; i++) {
    const pixel = Math.floor(i / channels);
    const x = pixel % width;
    const y = Math.floor(pixel / width);
    const difference = Math.abs(ours.data[i]! - reference[i]!);
    if (x < width - 1 && y < height - 1) inner = Math.max(inner, difference);
    else border = Math.max(border, difference);
  }
  // The channels stored in the cut JPEG itself (the decoder may expand grey to RGB).
  return { width: ours.info.width, height: ours.info.height, channels: (await sharp(cut).metadata()).channels, inner, border };
}

describe('cropJpegCorner (edge tiles without decoding)', () => {
  const sizes = [
    [208, 256],
    [256, 77],
    [1, 1],
    [13, 250],
    [256, 256],
    [17, 9],
  ] as const;

  it.each([
    ['4:2:0', false],
    ['4:2:0', true],
    ['4:4:4', false],
    ['4:4:4', true],
  ] as const)('cuts %s (optimised tables: %s) to the exact size with the stored pixels', async (subsampling, optimiseCoding) => {
    const stored = await sharp(await texture(256, 256, 3)).jpeg({ quality: 85, chromaSubsampling: subsampling, optimiseCoding }).toBuffer();
    let declined = 0;
    for (const [width, height] of sizes) {
      const cut = cropJpegCorner(stored, width, height);
      if (!cut) {
        // Only an optimised DC table can lack a category the new differences need.
        expect(optimiseCoding).toBe(true);
        declined++;
        continue;
      }
      const result = await compare(stored, cut, width, height);
      expect([result.width, result.height, result.channels]).toEqual([width, height, 3]);
      expect(result.inner).toBe(0);
      expect(result.border).toBeLessThanOrEqual(subsampling === '4:2:0' ? 24 : 0);
      if (width * height < 256 * 200) expect(cut.length).toBeLessThan(stored.length);
    }
    expect(declined).toBeLessThan(sizes.length);
  });

  it('cuts a greyscale JPEG', async () => {
    const stored = await sharp(await texture(256, 256, 1)).toColourspace('b-w').jpeg({ quality: 80 }).toBuffer();
    expect((await sharp(stored).metadata()).channels).toBe(1);
    const cut = cropJpegCorner(stored, 100, 37)!;
    const result = await compare(stored, cut, 100, 37);
    expect(result).toEqual({ width: 100, height: 37, channels: 1, inner: 0, border: 0 });
  });

  it('leaves progressive JPEGs, oversized cuts and garbage to the decoder (undefined, no throw)', async () => {
    const progressive = await sharp(await texture(64, 64, 3)).jpeg({ progressive: true }).toBuffer();
    const baseline = await sharp(await texture(64, 64, 3)).jpeg().toBuffer();
    expect(cropJpegCorner(progressive, 32, 32)).toBeUndefined();
    expect(cropJpegCorner(baseline, 65, 32)).toBeUndefined();
    expect(cropJpegCorner(baseline, 0, 32)).toBeUndefined();
    expect(cropJpegCorner(Buffer.from('not a jpeg'), 1, 1)).toBeUndefined();
    // Truncated entropy data: refused, not read past the end.
    expect(cropJpegCorner(baseline.subarray(0, baseline.length >> 1), 64, 64)).toBeUndefined();
    // Random bytes after a valid header never throw.
    const header = baseline.subarray(0, baseline.indexOf(Buffer.from([0xff, 0xda])) + 14);
    for (let seed = 1; seed <= 200; seed++) {
      const noise = Buffer.from(Array.from({ length: 300 }, (_, i) => (seed * 7919 + i * 104729) % 251));
      expect(() => cropJpegCorner(Buffer.concat([header, noise]), 40, 40)).not.toThrow();
    }
    // Corrupted headers too (a damaged TIFF's tile): every byte position of the header, mutated.
    for (let at = 2; at < header.length; at++) {
      for (const value of [0x00, 0x01, 0xff, header[at]! ^ 0x5a]) {
        const damaged = Buffer.from(baseline);
        damaged[at] = value;
        expect(() => cropJpegCorner(damaged, 40, 40)).not.toThrow();
      }
    }
  });
});
