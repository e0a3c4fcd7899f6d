/**
 * Benchmark images, generated (never committed): photograph-like texture — fine noise over
 * large smooth shapes — so JPEG encoding costs what it costs on real scans, not on flat colour.
 */
import { execFile } from 'node:child_process';
import { mkdir, open, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';

const run = promisify(execFile);

export const BENCH_WIDTH = 12_000;
export const BENCH_HEIGHT = 9_000;

/**
 * Three pyramids (so W1 has over 5,000 distinct tiles) and three plain JPEGs of the same size,
 * so W2 asks for as many tiles as W1 and its measurement is as long.
 */
export const PYRAMIDS = ['pyramid-a.tif', 'pyramid-b.tif', 'pyramid-c.tif'];
export const PLAIN_JPEGS = ['plain-a.jpg', 'plain-b.jpg', 'plain-c.jpg'];

/**
 * Pyramids of the same three images made by programs other than this project, as users bring
 * them: Debian bookworm's vips (libvips 8.14) with 256-px RGB JPEG tiles without an Adobe
 * marker (`--Q 90`), and with its defaults (128-px YCbCr tiles at Q 75, so every 256-px viewer
 * tile spans four stored tiles); ImageMagick's ptif: writer (256-px RGB tiles, quality 85).
 * Made from each pyramid's full-size page by the programs themselves (scripts/system/imaging-tools.sh).
 */
export const FOREIGN_PYRAMIDS = {
  vipsRgb: PYRAMIDS.map((name) => name.replace('pyramid-', 'vips814-rgb-')),
  vipsDefault: PYRAMIDS.map((name) => name.replace('pyramid-', 'vips814-default-')),
  magick: PYRAMIDS.map((name) => name.replace('pyramid-', 'magick-')),
};

const FOREIGN_COMMANDS: Record<keyof typeof FOREIGN_PYRAMIDS, (source: string, target: string) => [string, string[]]> = {
  vipsRgb: (source, target) => ['/usr/bin/vips', ['tiffsave', `${source}[page=0]`, target, '--tile', '--tile-width', '256', '--tile-height', '256', '--pyramid', '--compression', 'jpeg', '--Q', '90']],
  vipsDefault: (source, target) => ['/usr/bin/vips', ['tiffsave', `${source}[page=0]`, target, '--tile', '--pyramid', '--compression', 'jpeg']],
  magick: (source, target) => ['/usr/bin/convert', [`${source}[0]`, '-define', 'tiff:tile-geometry=256x256', '-compress', 'jpeg', '-quality', '85', `ptif:${target}`]],
};

/**
 * Debian's ImageMagick policy caps its pixel cache far below a 12000×9000 image at 16 bits per
 * sample ("cache resources exhausted"); a policy found first on MAGICK_CONFIGURE_PATH raises
 * the caps for the bench's own conversions only.
 */
const MAGICK_POLICY = `<policymap>
  <policy domain="resource" name="memory" value="4GiB"/>
  <policy domain="resource" name="map" value="8GiB"/>
  <policy domain="resource" name="disk" value="16GiB"/>
  <policy domain="resource" name="area" value="1GP"/>
  <policy domain="resource" name="width" value="64KP"/>
  <policy domain="resource" name="height" value="64KP"/>
</policymap>
`;

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

/**
 * opj_compress options for a JP2 the way archives write them: 7 resolution levels, RPCL
 * progression, 256×256 precincts, 4 quality layers, 9/7 wavelet at 8:1 (untiled).
 */
export const ARCHIVAL_JP2 = ['-n', '7', '-p', 'RPCL', '-c', '[256,256],[256,256],[256,256],[256,256],[256,256],[256,256],[256,256]', '-I', '-r', '64,32,16,8'];
/** The BENCH_WIDTH×BENCH_HEIGHT archival JP2 (ARCHIVAL_JP2) that bench:jp2 and bench:compare read. */
export const JP2_UNTILED = 'jp2-untiled.jp2';

/**
 * Makes `name` in `folder` when missing: the seed-4 texture at BENCH_WIDTH×BENCH_HEIGHT encoded
 * by Debian's opj_compress (libopenjp2-tools) with `args`; returns its path.
 */
export async function ensureJp2(folder: string, name: string, args: string[], log: (line: string) => void): Promise<string> {
  const path = join(folder, name);
  if (await exists(path)) return path;
  await mkdir(folder, { recursive: true });
  log(`making ${name} (${BENCH_WIDTH}×${BENCH_HEIGHT}) with opj_compress ${args.join(' ')}`);
  // opj_compress reads binary PPM without any encoding cost on our side.
  const ppm = `${path}.input.ppm`;
  const file = await open(ppm, 'w');
  try {
    await file.write(`P6\n${BENCH_WIDTH} ${BENCH_HEIGHT}\n255\n`);
    await file.write(await (await texture(4)).raw().toBuffer());
  } finally {
    await file.close();
  }
  try {
    await run('opj_compress', ['-i', ppm, '-o', `${path}.partial.jp2`, '-threads', '2', ...args]);
    await rename(`${path}.partial.jp2`, path);
  } finally {
    await rm(ppm, { force: true });
    await rm(`${path}.partial.jp2`, { force: true });
  }
  return path;
}

/** Encodes to `path` through a temporary name, so an interrupted run leaves no half image. */
const writeAtomically = (path: string, image: sharp.Sharp): Promise<void> => writeOnce(path, (tmp) => image.toFile(tmp));

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Makes `name` in `folder` when missing: the seeded BENCH_WIDTH×BENCH_HEIGHT texture, encoded by `encode`; returns its path. */
export async function ensureTexture(folder: string, name: string, seed: number, encode: (image: sharp.Sharp) => sharp.Sharp, log: (line: string) => void): Promise<string> {
  const path = join(folder, name);
  if (await exists(path)) return path;
  await mkdir(folder, { recursive: true });
  log(`making ${name} (${BENCH_WIDTH}×${BENCH_HEIGHT})`);
  await writeAtomically(path, encode(await texture(seed)));
  return path;
}

/** The seeds of PLAIN_JPEGS (so other encodings of the same images can be made). */
export const PLAIN_SEEDS = [7, 8, 9];

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
    ...PLAIN_JPEGS.map((name, i): [string, number, (image: sharp.Sharp) => sharp.Sharp] => [name, PLAIN_SEEDS[i]!, (image) => image.jpeg({ quality: 85 })]),
  ];
  for (const [name, seed, encode] of jobs) await ensureTexture(folder, name, seed, encode, log);
  const magickConfig = join(folder, '.magick');
  await mkdir(magickConfig, { recursive: true });
  await writeFile(join(magickConfig, 'policy.xml'), MAGICK_POLICY);
  const env = { ...process.env, MAGICK_CONFIGURE_PATH: magickConfig };
  for (const [kind, names] of Object.entries(FOREIGN_PYRAMIDS) as Array<[keyof typeof FOREIGN_PYRAMIDS, string[]]>) {
    for (const [i, name] of names.entries()) {
      const path = join(folder, name);
      if (await exists(path)) continue;
      log(`making ${name} (${kind})`);
      await writeOnce(path, (tmp) => run(...FOREIGN_COMMANDS[kind](join(folder, PYRAMIDS[i]!), tmp), { env }));
    }
  }
  return folder;
}

/** Writes `path` through a temporary file, so an interrupted run leaves nothing half-made behind. */
async function writeOnce(path: string, write: (tmp: string) => Promise<unknown>): Promise<void> {
  const tmp = `${path}.partial`;
  try {
    await write(tmp);
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}
