/**
 * Makes the sample images the server shows by default. Nothing is downloaded: every pixel is
 * computed here. Existing samples are kept, so `npm start` pays for this once.
 *
 *   mandelbrot.tif  6400×4800 tiled pyramidal TIFF (JPEG tiles), deep enough for 6 zoom levels
 *   plasma.jpg      2400×1600 plain JPEG with smooth photograph-like colour
 *   bubbles.png     900×600 PNG with transparency
 */
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { defaultSampleFolder } from '../src/paths.js';

type RGB = [number, number, number];

/** Escape-time Mandelbrot with smooth colouring and a faint 512-px grid to judge tile seams. */
function mandelbrot(width: number, height: number): Buffer {
  const pixels = Buffer.alloc(width * height * 3);
  const maxIterations = 96;
  const scale = 3.2 / width;
  for (let py = 0; py < height; py++) {
    const ci = (py - height / 2) * scale;
    for (let px = 0; px < width; px++) {
      const cr = (px - width * 0.62) * scale;
      let zr = 0;
      let zi = 0;
      let n = 0;
      while (n < maxIterations && zr * zr + zi * zi < 16) {
        const t = zr * zr - zi * zi + cr;
        zi = 2 * zr * zi + ci;
        zr = t;
        n++;
      }
      let colour: RGB = [8, 10, 30];
      if (n < maxIterations) {
        const smooth = n + 1 - Math.log2(Math.log2(zr * zr + zi * zi) / 2);
        const t = smooth / 24;
        colour = [
          128 + 127 * Math.sin(t * 2.1 + 0.3),
          128 + 127 * Math.sin(t * 1.7 + 2.1),
          128 + 127 * Math.sin(t * 1.3 + 4.2),
        ];
      }
      if (px % 512 === 0 || py % 512 === 0) colour = [colour[0] * 0.6, colour[1] * 0.6, colour[2] * 0.6];
      const i = (py * width + px) * 3;
      pixels[i] = colour[0];
      pixels[i + 1] = colour[1];
      pixels[i + 2] = colour[2];
    }
  }
  return pixels;
}

/** Overlapping sine waves: smooth gradients with fine detail, costly to encode like a photo. */
function plasma(width: number, height: number): Buffer {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v =
        Math.sin(x / 37) + Math.sin(y / 23) + Math.sin((x + y) / 41) + Math.sin(Math.hypot(x - width / 2, y - height / 2) / 19);
      const i = (y * width + x) * 3;
      pixels[i] = 128 + 127 * Math.sin(v * Math.PI);
      pixels[i + 1] = 128 + 127 * Math.sin(v * Math.PI + 2);
      pixels[i + 2] = 128 + 127 * Math.sin(v * Math.PI + 4) * ((x ^ y) & 8 ? 1 : 0.9);
    }
  }
  return pixels;
}

function bubblesSvg(width: number, height: number): Buffer {
  const circles = Array.from({ length: 24 }, (_, k) => {
    const cx = (k * 173) % width;
    const cy = (k * 97) % height;
    const r = 30 + ((k * 37) % 90);
    const hue = (k * 47) % 360;
    return `<circle cx="${cx}" cy="${cy}" r="${r}" fill="hsl(${hue},80%,55%)" fill-opacity="0.7"/>`;
  }).join('');
  return Buffer.from(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">${circles}</svg>`);
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Writes next to the target and renames, so an interrupted run never leaves half a file. */
async function writeAtomically(path: string, write: (tmp: string) => Promise<unknown>): Promise<void> {
  const tmp = `${path}.partial-${process.pid}`;
  try {
    await write(tmp);
    await rename(tmp, path);
  } finally {
    await rm(tmp, { force: true });
  }
}

async function makeSamples(folder: string): Promise<string[]> {
  await mkdir(folder, { recursive: true });
  const made: string[] = [];
  const samples: Array<[string, (tmp: string) => Promise<unknown>]> = [
    [
      'mandelbrot.tif',
      (tmp) =>
        sharp(mandelbrot(6400, 4800), { raw: { width: 6400, height: 4800, channels: 3 } })
          .tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg', quality: 88 })
          .toFile(tmp),
    ],
    [
      'plasma.jpg',
      (tmp) =>
        sharp(plasma(2400, 1600), { raw: { width: 2400, height: 1600, channels: 3 } }).jpeg({ quality: 90 }).toFile(tmp),
    ],
    ['bubbles.png', (tmp) => sharp(bubblesSvg(900, 600)).png().toFile(tmp)],
  ];
  for (const [name, write] of samples) {
    const path = join(folder, name);
    if (await exists(path)) continue;
    await writeAtomically(path, write);
    made.push(name);
  }
  return made;
}

const folder = process.argv[2] ?? defaultSampleFolder();
const made = await makeSamples(folder);
console.log(made.length > 0 ? `samples: made ${made.join(', ')} in ${folder}` : `samples: up to date in ${folder}`);
