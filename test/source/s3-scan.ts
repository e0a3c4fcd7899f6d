import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { expect } from 'vitest';
import { near, pixel } from '../fixtures.js';

/**
 * The image of the ranged-read tests: a 4096×3072 pyramid with 256-px JPEG tiles of 20–40 KB
 * (grain over a gradient, like a scan), whose colour encodes position: red grows rightwards,
 * green downwards; blue tells the version.
 */
export const [W, H] = [4096, 3072];
/** IIIF_S3_BLOCK_BYTES' default. */
export const BLOCK = 64 * 1024;
/** The colour at full-resolution pixel (x, y) of the version whose blue is `blue`. */
export const colourAt = (x: number, y: number, blue: number) => [Math.round((x * 255) / (W - 1)), Math.round((y * 255) / (H - 1)), blue];

/** The pyramid, as a TIFF file's bytes. */
export async function scan(blue: number): Promise<Buffer> {
  const pixels = Buffer.alloc(W * H * 3);
  const grain = randomBytes(W * H);
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const i = (y * W + x) * 3;
      const [r, g, b] = colourAt(x, y, blue);
      const n = (grain[y * W + x]! % 25) - 12;
      pixels[i] = Math.max(0, Math.min(255, r! + n));
      pixels[i + 1] = Math.max(0, Math.min(255, g! + n));
      pixels[i + 2] = Math.max(0, Math.min(255, b! + n));
    }
  }
  return sharp(pixels, { raw: { width: W, height: H, channels: 3 } })
    .tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg', quality: 85 })
    .toBuffer();
}

/** A level-0 tile (column, row) of `id`, as a viewer asks for it. */
export const tileUrl = (id: string, column: number, row: number, format = 'jpg') => `/iiif/3/${id}/${column * 256},${row * 256},256,256/256,256/0/default.${format}`;

/** Asserts that `payload` shows level-0 tile (column, row) of the version whose blue is `blue`. */
export async function expectTileOf(payload: Buffer, column: number, row: number, blue: number): Promise<void> {
  for (const [dx, dy] of [[40, 40], [128, 128], [220, 200]] as const) {
    expect(near(await pixel(payload, dx, dy), colourAt(column * 256 + dx, row * 256 + dy, blue), 30)).toBe(true);
  }
}

/** Block files in a cache folder, at any depth. */
export async function blockFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  return entries.filter((e) => e.isFile() && /^b\d+$/.test(e.name)).map((e) => join(e.parentPath, e.name));
}
