/**
 * Benchmark images, generated (never committed): photograph-like texture — fine noise over
 * large smooth shapes — so JPEG encoding costs what it costs on real scans, not on flat colour.
 */
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';

export const BENCH_WIDTH = 12_000;
export const BENCH_HEIGHT = 9_000;

/**
 * Three pyramids (so W1 has over 5,000 distinct tiles) and three plain JPEGs of the same size,
 * so W2 asks for as many tiles as W1 and its measurement is as long.
 */
export const PYRAMIDS = ['pyramid-a.tif', 'pyramid-b.tif', 'pyramid-c.tif'];
export const PLAIN_JPEGS = ['plain-a.jpg', 'plain-b.jpg', 'plain-c.jpg'];

/** Large smooth colour fields, computed small and enlarged (cheap), seeded per image. */
function shapes(seed: number, width: number, height: number): Buffer {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = Math.sin(x / (23 + seed)) + Math.sin(y / (17 + seed * 2)) + Math.sin((x + y) / (31 + seed)) + Math.cos(Math.hypot(x - width / 3, y - height / 2) / 29);
      const i = (y * width + x) * 3;
      pixels[i] = 128 + 100 * Math.sin(v * 1.3 + seed);
      pixels[i + 1] = 128 + 100 * Math.sin(v * 1.1 + 2 + seed);
      pixels[i + 2] = 128 + 100 * Math.sin(v * 0.9 + 4 + seed);
    }
  }
  return pixels;
}

interface TextureOptions {
  width: number;
  height: number;
  /** How much of the grain shows: 0.5 like film grain over a print, 1 like a coarse scan. */
  grain: number;
}

/** A photograph-like image, 8-bit RGB, seeded: BENCH_WIDTH×BENCH_HEIGHT with film grain unless told otherwise. */
export async function texture(seed: number, { width, height, grain: strength }: TextureOptions = { width: BENCH_WIDTH, height: BENCH_HEIGHT, grain: 0.5 }): Promise<sharp.Sharp> {
  const [w, h] = [Math.round(width / 10), Math.round(height / 10)];
  const base = await sharp(shapes(seed, w, h), { raw: { width: w, height: h, channels: 3 } })
    .resize(width, height, { kernel: 'cubic' })
    .raw()
    .toBuffer();
  const grain = await sharp({
    create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } },
    limitInputPixels: false,
  })
    .blur(0.8)
    .raw()
    .toBuffer();
  // Overlay the grain: detail everywhere, like film grain and paper texture.
  for (let i = 0; i < base.length; i++) base[i] = Math.max(0, Math.min(255, base[i]! + Math.trunc((grain[i]! - 128) * strength)));
  return sharp(base, { raw: { width, height, channels: 3 }, limitInputPixels: false });
}

/** The cold-start benchmark's image: a pyramidal TIFF of about 100 MB with 20–40 KB stored tiles. */
export const COLD_IMAGE = { name: 'cold.tif', width: 18_432, height: 14_000 };

/** Makes the cold-start image in `folder` when missing; returns its path. */
export async function ensureColdImage(folder: string, log: (line: string) => void): Promise<string> {
  const path = join(folder, COLD_IMAGE.name);
  if (await exists(path)) return path;
  await mkdir(folder, { recursive: true });
  log(`making ${COLD_IMAGE.name} (${COLD_IMAGE.width}×${COLD_IMAGE.height})`);
  const image = await texture(4, { width: COLD_IMAGE.width, height: COLD_IMAGE.height, grain: 1 });
  await writeAtomically(path, image.tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg', quality: 85 }));
  return path;
}

/** Encodes to `path` through a temporary name, so an interrupted run leaves no half image. */
async function writeAtomically(path: string, image: sharp.Sharp): Promise<void> {
  const tmp = `${path}.partial`;
  try {
    await image.toFile(tmp);
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Makes whatever is missing in `folder`; returns the folder. */
export async function ensureBenchImages(folder: string, log: (line: string) => void): Promise<string> {
  await mkdir(folder, { recursive: true });
  const jobs: Array<[string, number, (image: sharp.Sharp) => sharp.Sharp]> = [
    ...PYRAMIDS.map((name, i): [string, number, (image: sharp.Sharp) => sharp.Sharp] => [
      name,
      i + 1,
      // Quality 85: YCbCr tiles, as most pyramid builders write them.
      (image) => image.tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg', quality: 85 }),
    ]),
    ...PLAIN_JPEGS.map((name, i): [string, number, (image: sharp.Sharp) => sharp.Sharp] => [name, i + 7, (image) => image.jpeg({ quality: 85 })]),
  ];
  for (const [name, seed, encode] of jobs) {
    const path = join(folder, name);
    if (await exists(path)) continue;
    log(`making ${name} (${BENCH_WIDTH}×${BENCH_HEIGHT})`);
    await writeAtomically(path, encode(await texture(seed)));
  }
  return folder;
}
