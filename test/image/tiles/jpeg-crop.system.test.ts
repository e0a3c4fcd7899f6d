import { execFile } from 'node:child_process';
import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import type { Rect } from '../../../src/iiif/plan.js';
import { cutJpegTiles as cutWith } from '../../../src/image/tiles/jpeg-crop.js';
import { nativeCutter } from '../../../src/image/tiles/jpeg-native.js';

/** The same pseudo-random bytes on every run (mulberry32): a failure here can be reproduced. */
function seededNoise(length: number, seed: number): Buffer {
  const bytes = Buffer.alloc(length);
  let state = seed >>> 0;
  for (let i = 0; i < length; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = Math.imul(state ^ (state >>> 15), state | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    // Two uniform bytes averaged: centred on 128 like the gaussian noise it replaces.
    const pair = ((t ^ (t >>> 14)) >>> 0) & 0xffff;
    bytes[i] = ((pair & 0xff) + (pair >>> 8)) >> 1;
  }
  return bytes;
}

/**
 * Photograph-like texture: smoothed noise, so every block has real AC coefficients. Seeded, so
 * the chroma steps at a cut's last row and column (which bound `border` below) are the same on
 * every run instead of a random draw.
 */
async function texture(width: number, height: number, channels: 1 | 3): Promise<Buffer> {
  // Seeded by the size: the same image whichever tests run, in whatever order.
  const noise = seededNoise(width * height * 3, width * 65_536 + height);
  const colour = await sharp(noise, { raw: { width, height, channels: 3 } }).blur(1.1).png().toBuffer();
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

it('the native cut is built here, and cuts byte for byte as the JavaScript one', async () => {
  expect(nativeCutter()).toBeDefined();
  for (const subsampling of ['4:2:0', '4:4:4'] as const) {
    const image = await texture(256, 256, 3);
    const tiles: Buffer[] = [];
    for (const [left, top] of [[0, 0], [128, 0], [0, 128], [128, 128]] as const) {
      tiles.push(await sharp(image).extract({ left, top, width: 128, height: 128 }).jpeg({ quality: 85, chromaSubsampling: subsampling }).toBuffer());
    }
    for (const rect of [{ x: 0, y: 0, width: 256, height: 256 }, { x: 5, y: 7, width: 200, height: 100 }, { x: 130, y: 140, width: 1, height: 1 }]) {
      expect(cutWith(tiles, 2, rect, true), JSON.stringify(rect)).toEqual(cutWith(tiles, 2, rect, false));
    }
  }
});

// Both implementations: C++ (native/jpegtiles) and the JavaScript it falls back to.
for (const native of [true, false]) {
describe(native ? 'the C++ cut' : 'the JavaScript cut', () => {
  const cutJpegTiles = (tiles: Buffer[], across: number, rect: Rect) => cutWith(tiles, across, rect, native);
  /** The top-left width × height of one JPEG, cut without decoding. */
  const cropJpegCorner = (jpeg: Buffer, width: number, height: number) => cutJpegTiles([jpeg], 1, { x: 0, y: 0, width, height })?.jpeg;

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

  describe('cutJpegTiles over a grid of stored tiles', () => {
    /** A 256×256 texture stored as a 2×2 grid of 128-px JPEG tiles sharing one header, and the tiles decoded and joined. */
    async function grid(subsampling: '4:2:0' | '4:4:4', restart = false) {
      const image = await texture(256, 256, 3);
      const tiles: Buffer[] = [];
      for (const [left, top] of [[0, 0], [128, 0], [0, 128], [128, 128]] as const) {
        const tile = await sharp(image).extract({ left, top, width: 128, height: 128 }).jpeg({ quality: 85, chromaSubsampling: subsampling, optimiseCoding: false }).toBuffer();
        tiles.push(restart ? await run('/usr/bin/jpegtran', ['-restart', '3B'], tile) : tile);
      }
      const joined = Buffer.alloc(256 * 256 * 3);
      for (const [i, tile] of tiles.entries()) {
        const { data } = await raw(tile);
        for (let y = 0; y < 128; y++) data.copy(joined, ((Math.floor(i / 2) * 128 + y) * 256 + (i % 2) * 128) * 3, y * 128 * 3, (y + 1) * 128 * 3);
      }
      return { tiles, joined };
    }

    /** Mean and largest difference between a cut (from x, y in it) and the joined tiles' pixels of `rect`. */
    async function compareCut(cut: { jpeg: Buffer; x: number; y: number }, joined: Buffer, rect: { x: number; y: number; width: number; height: number }) {
      const { data, info } = await raw(cut.jpeg);
      expect([info.width, info.height]).toEqual([cut.x + rect.width, cut.y + rect.height]);
      let sum = 0;
      let max = 0;
      for (let y = 0; y < rect.height; y++) {
        for (let x = 0; x < rect.width * 3; x++) {
          const d = Math.abs(data[((cut.y + y) * info.width + cut.x) * 3 + x]! - joined[((rect.y + y) * 256 + rect.x) * 3 + x]!);
          sum += d;
          max = Math.max(max, d);
        }
      }
      return { mean: sum / (rect.width * rect.height * 3), max };
    }

    const rects = [
      { x: 0, y: 0, width: 256, height: 256 },
      { x: 16, y: 32, width: 200, height: 180 },
      { x: 5, y: 7, width: 200, height: 100 },
      { x: 120, y: 0, width: 20, height: 256 },
      { x: 130, y: 140, width: 1, height: 1 },
    ];

    it.each(['4:4:4', '4:2:0'] as const)('joins %s tiles into one JPEG of any rectangle, widened to whole MCUs', async (subsampling) => {
      const { tiles, joined } = await grid(subsampling);
      for (const rect of rects) {
        const cut = cutJpegTiles(tiles, 2, rect)!;
        const mcu = subsampling === '4:2:0' ? 16 : 8;
        expect([cut.x, cut.y]).toEqual([rect.x % mcu, rect.y % mcu]);
        const { mean, max } = await compareCut(cut, joined, rect);
        // 4:4:4 blocks decode alone; 4:2:0 chroma is upsampled from across the tiles' seams, which
        // the tiles decoded apart cannot do, and without its neighbours at the cut's own edges
        // (all there is of a 1×1 cut).
        if (subsampling === '4:4:4') expect(max, JSON.stringify(rect)).toBe(0);
        else if (rect.width > 1) expect(mean, JSON.stringify(rect)).toBeLessThan(1);
      }
    });

    it('reads tiles with restart markers and writes none', async () => {
      const { tiles, joined } = await grid('4:4:4', true);
      expect(tiles[0]!.includes(Buffer.from([0xff, 0xd0]))).toBe(true);
      for (const rect of rects) {
        const cut = cutJpegTiles(tiles, 2, rect)!;
        expect((await compareCut(cut, joined, rect)).max, JSON.stringify(rect)).toBe(0);
        expect(cut.jpeg.subarray(cut.jpeg.indexOf(Buffer.from([0xff, 0xda]))).some((byte, i, all) => byte === 0xff && all[i + 1]! >= 0xd0 && all[i + 1]! <= 0xd7)).toBe(false);
      }
    });

    it('leaves tiles that do not share one header, and rectangles outside the grid, to the decoder', async () => {
      const { tiles } = await grid('4:4:4');
      const other = await sharp(await texture(128, 128, 3)).jpeg({ quality: 60, optimiseCoding: false }).toBuffer();
      expect(cutJpegTiles([tiles[0]!, other, tiles[2]!, tiles[3]!], 2, rects[0]!)).toBeUndefined();
      expect(cutJpegTiles(tiles, 2, { x: 200, y: 0, width: 57, height: 10 })).toBeUndefined();
      expect(cutJpegTiles(tiles, 3, rects[0]!)).toBeUndefined();
    });

    it('reads at most 256 KB of tiles in one cut (it runs on the event loop)', async () => {
      const heavy = await sharp(await texture(256, 256, 3)).jpeg({ quality: 100, chromaSubsampling: '4:4:4', optimiseCoding: false }).toBuffer();
      const count = Math.ceil((256 * 1024) / heavy.length) + 1;
      expect(cutJpegTiles([heavy], 1, { x: 0, y: 0, width: 100, height: 100 })).toBeDefined();
      expect(cutJpegTiles(Array<Buffer>(count).fill(heavy), count, { x: 0, y: 0, width: 100, height: 100 })).toBeUndefined();
    });
  });
});
}

/** Runs a filter program over `input`, resolving with its output. */
function run(command: string, args: string[], input: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(command, args, { encoding: 'buffer', maxBuffer: 1 << 24 }, (error, stdout) => (error ? reject(error) : resolve(stdout)));
    child.stdin!.end(input);
  });
}
