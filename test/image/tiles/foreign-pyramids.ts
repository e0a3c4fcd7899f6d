/**
 * Tiled JPEG pyramids made by other programs than this project (Debian's vips 8.14,
 * ImageMagick's ptif: writer, libtiff's tiffcp, cjpeg tiles in a hand-built TIFF), from one
 * photograph-like image, and libtiff's own decode of each page to compare pixels with.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { buildPyramid } from '../../../src/image/pyramid/convert.js';
import { jpegPageTags, TiffBuilder } from '../../tiff-builder.js';

const run = promisify(execFile);

export const PHOTO_WIDTH = 1500;
export const PHOTO_HEIGHT = 1100;

/** Smooth colour fields under fine grain: JPEG costs and rounds as on a scan, unlike flat colour. */
export function photo(width: number, height: number): sharp.Sharp {
  const pixels = Buffer.alloc(width * height * 3);
  let noise = 12345;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = Math.sin(x / 37) + Math.sin(y / 23) + Math.cos(Math.hypot(x - width / 3, y - height / 2) / 41);
      noise = (noise * 1_103_515_245 + 12_345) % 2 ** 31;
      const grain = (noise % 33) - 16;
      const i = (y * width + x) * 3;
      pixels[i] = 128 + 90 * Math.sin(v * 1.3) + grain;
      pixels[i + 1] = 128 + 90 * Math.sin(v * 1.1 + 2) + grain;
      pixels[i + 2] = 128 + 90 * Math.sin(v * 0.9 + 4) + grain;
    }
  }
  return sharp(pixels, { raw: { width, height, channels: 3 } });
}

export interface Foreign {
  /** File name in the folder (the IIIF identifier). */
  name: string;
  /** Who wrote it and how, for test names. */
  writer: string;
  /** What its pages store: 2 RGB, 6 YCbCr, 1 grey. */
  photometric: number;
  tileSize: number;
}

export const FOREIGN: Foreign[] = [
  { name: 'vips-ycbcr.tif', writer: 'Debian vips 8.14, Q 75 (YCbCr 4:2:0)', photometric: 6, tileSize: 256 },
  { name: 'vips-rgb.tif', writer: 'Debian vips 8.14, Q 95 (RGB, no Adobe marker)', photometric: 2, tileSize: 256 },
  { name: 'vips-default.tif', writer: 'Debian vips 8.14 defaults (128-px YCbCr tiles)', photometric: 6, tileSize: 128 },
  { name: 'vips-grey.tif', writer: 'Debian vips 8.14, grey', photometric: 1, tileSize: 256 },
  { name: 'magick-rgb.tif', writer: 'ImageMagick ptif: (RGB, no Adobe marker)', photometric: 2, tileSize: 256 },
  { name: 'magick-ycbcr.tif', writer: 'ImageMagick ptif: -colorspace YCbCr (YCbCr 4:4:4)', photometric: 6, tileSize: 256 },
  { name: 'magick-grey.tif', writer: 'ImageMagick ptif:, grey', photometric: 1, tileSize: 256 },
  { name: 'tiffcp-ycbcr.tif', writer: 'tiffcp -c jpeg (YCbCr 4:2:0)', photometric: 6, tileSize: 256 },
  { name: 'tiffcp-rgb.tif', writer: 'tiffcp -c jpeg:r (RGB, no Adobe marker)', photometric: 2, tileSize: 256 },
  { name: 'own-ycbcr.tif', writer: "this project's converter, quality 85 (YCbCr)", photometric: 6, tileSize: 256 },
  { name: 'own-rgb.tif', writer: "this project's converter, quality 95 (RGB with Adobe marker)", photometric: 2, tileSize: 256 },
  { name: 'cjpeg-422-restart.tif', writer: 'cjpeg tiles: 4:2:2, restart markers, no JPEGTables', photometric: 6, tileSize: 256 },
];

/** Writes every FOREIGN pyramid into `folder` from one photograph-like image. */
export async function makeForeignPyramids(folder: string): Promise<void> {
  const png = join(folder, 'photo.png');
  const grey = join(folder, 'photo-grey.png');
  await photo(PHOTO_WIDTH, PHOTO_HEIGHT).png().toFile(png);
  await sharp(png).greyscale().toColourspace('b-w').png().toFile(grey);
  const vips = (input: string, name: string, ...options: string[]) =>
    run('/usr/bin/vips', ['tiffsave', input, join(folder, name), '--tile', '--pyramid', '--compression', 'jpeg', ...options]);
  const size256 = ['--tile-width', '256', '--tile-height', '256'];
  const magick = (input: string, name: string, ...options: string[]) =>
    run('/usr/bin/convert', [input, ...options, '-define', 'tiff:tile-geometry=256x256', '-compress', 'jpeg', '-quality', '85', `ptif:${join(folder, name)}`]);
  // tiffcp makes no levels itself: it joins uncompressed halvings into one file of tiled pages.
  const levels = await Promise.all(
    [1, 2, 4].map(async (factor) => {
      const path = join(folder, `level-${factor}.tif`);
      await sharp(png).resize(Math.floor(PHOTO_WIDTH / factor), Math.floor(PHOTO_HEIGHT / factor)).tiff({ compression: 'none' }).toFile(path);
      return path;
    }),
  );
  const tiffcp = (name: string, compression: string) => run('/usr/bin/tiffcp', ['-c', compression, '-t', '-w', '256', '-l', '256', ...levels, join(folder, name)]);
  const own = (name: string, quality: number) => buildPyramid(png, join(folder, name), { tileSize: 256, quality, maxInputPixels: 1e9 });
  await Promise.all([
    vips(png, 'vips-ycbcr.tif', ...size256, '--Q', '75'),
    vips(png, 'vips-rgb.tif', ...size256, '--Q', '95'),
    vips(png, 'vips-default.tif'),
    vips(grey, 'vips-grey.tif', ...size256),
    magick(png, 'magick-rgb.tif'),
    magick(png, 'magick-ycbcr.tif', '-colorspace', 'YCbCr'),
    magick(grey, 'magick-grey.tif', '-colorspace', 'gray'),
    tiffcp('tiffcp-ycbcr.tif', 'jpeg:75'),
    tiffcp('tiffcp-rgb.tif', 'jpeg:r:90'),
    own('own-ycbcr.tif', 85),
    own('own-rgb.tif', 95),
    cjpegPyramid(png, join(folder, 'cjpeg-422-restart.tif')),
  ]);
}

/**
 * A one-level TIFF whose tiles are complete JPEGs from cjpeg (no JPEGTables), 4:2:2 sampled,
 * with a restart marker every two MCUs: variants no pyramid tool here writes, but TIFF allows.
 */
async function cjpegPyramid(png: string, path: string): Promise<void> {
  const [width, height, tile] = [700, 500, 256];
  const image = sharp(png).extract({ left: 0, top: 0, width, height });
  const pixels = await image.raw().toBuffer();
  const file = new TiffBuilder();
  const offsets: number[] = [];
  const counts: number[] = [];
  for (let y = 0; y < height; y += tile) {
    for (let x = 0; x < width; x += tile) {
      // Edge tiles padded to the full tile size with their last row and column, as libtiff does.
      const ppm = Buffer.alloc(tile * tile * 3);
      for (let ty = 0; ty < tile; ty++) {
        for (let tx = 0; tx < tile; tx++) {
          const from = (Math.min(y + ty, height - 1) * width + Math.min(x + tx, width - 1)) * 3;
          pixels.copy(ppm, (ty * tile + tx) * 3, from, from + 3);
        }
      }
      const jpeg = await cjpeg(Buffer.concat([Buffer.from(`P6\n${tile} ${tile}\n255\n`), ppm]), ['-quality', '85', '-sample', '2x1', '-restart', '2B']);
      offsets.push(file.data(jpeg));
      counts.push(jpeg.length);
    }
  }
  file.directory(jpegPageTags({ width, height, tileSize: tile, photometric: 6, samples: 3, offsets, counts, subsampling: [2, 1] }));
  await writeFile(path, file.build());
}

async function cjpeg(ppm: Buffer, options: string[]): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile('/usr/bin/cjpeg', options, { encoding: 'buffer', maxBuffer: 1 << 24 }, (error, stdout) => (error ? reject(error) : resolve(stdout)));
    child.stdin!.end(ppm);
  });
}

export interface Raster {
  data: Buffer;
  width: number;
  height: number;
  channels: number;
}

/** libtiff's own decode of one page (tiffcp to an uncompressed TIFF), as raw pixels. */
export async function libtiffPage(path: string, page: number, scratch: string): Promise<Raster> {
  const out = join(scratch, `libtiff-${page}-${Date.now()}-${Math.random().toString(36).slice(2)}.tif`);
  await run('/usr/bin/tiffcp', ['-c', 'none', `${path},${page}`, out]);
  const { data, info } = await sharp(out).raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}

/**
 * Mean and largest channel difference between `decoded` (a tile or a response) and the same
 * pixels of `reference` starting at (left, top); only the part inside both is compared.
 */
export function difference(decoded: Raster, reference: Raster, left: number, top: number): { mean: number; max: number } {
  let sum = 0;
  let max = 0;
  let count = 0;
  const width = Math.min(decoded.width, reference.width - left);
  const height = Math.min(decoded.height, reference.height - top);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < reference.channels; c++) {
        const a = decoded.data[(y * decoded.width + x) * decoded.channels + Math.min(c, decoded.channels - 1)]!;
        const b = reference.data[((top + y) * reference.width + left + x) * reference.channels + c]!;
        const d = Math.abs(a - b);
        sum += d;
        max = Math.max(max, d);
        count++;
      }
    }
  }
  return { mean: sum / count, max };
}

/** Decodes an image (a JPEG tile or response) to raw pixels, grey staying one channel. */
export async function decode(image: Buffer): Promise<Raster> {
  const grey = (await sharp(image).metadata()).channels === 1;
  const { data, info } = await sharp(image).toColourspace(grey ? 'b-w' : 'srgb').raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height, channels: info.channels };
}
