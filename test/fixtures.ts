/**
 * Test images with known content, written to a fresh temporary folder. Colours are chosen far
 * apart so JPEG artefacts never blur one patch into another.
 */
import { mkdtemp, mkdir, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deflateSync, crc32 } from 'node:zlib';
import sharp from 'sharp';

export const RED = [255, 0, 0];
export const GREEN = [0, 255, 0];
export const BLUE = [0, 0, 255];
export const YELLOW = [255, 255, 0];
export const WHITE = [255, 255, 255];

/** 400×200 in four 200×100 quadrants: red | green over blue | yellow. */
export async function quadrants(): Promise<Buffer> {
  const patch = (colour: number[]) =>
    sharp({ create: { width: 200, height: 100, channels: 3, background: { r: colour[0]!, g: colour[1]!, b: colour[2]! } } })
      .png()
      .toBuffer();
  return sharp({ create: { width: 400, height: 200, channels: 3, background: '#000' } })
    .composite([
      { input: await patch(RED), left: 0, top: 0 },
      { input: await patch(GREEN), left: 200, top: 0 },
      { input: await patch(BLUE), left: 0, top: 100 },
      { input: await patch(YELLOW), left: 200, top: 100 },
    ])
    .png()
    .toBuffer();
}

/** A PNG whose header claims width×height pixels but which carries almost no data. */
export function pngBomb(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // 8-bit RGB, no interlace
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** The colour gradient.tif has at full-resolution pixel (x, y): red grows rightwards, green downwards. */
export function gradientColour(x: number, y: number): number[] {
  return [Math.round((x * 255) / 1999), Math.round((y * 255) / 1499), 128];
}

function gradient(width: number, height: number): Buffer {
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) pixels.set(gradientColour(x, y), (y * width + x) * 3);
  }
  return pixels;
}

export interface Fixtures {
  root: string;
  /** A folder beside the root, for symlinks that point out. */
  outside: string;
}

/**
 * root/
 *   quadrants.png        the quadrant chart
 *   noext                the same chart as JPEG, no extension (format sniffed from content)
 *   deep/dir/chart.png   the chart in a sub-folder (identifier "deep/dir/chart.png")
 *   chart.tif            the chart found by extension fallback (identifier "chart")
 *   pyramid.tif          2048×1536 tiled pyramid with 4 levels
 *   gradient.tif         2000×1500 tiled JPEG pyramid whose colour encodes position (see gradientColour)
 *   rotated.jpg          viewed as 200×100 blue|red, stored sideways with EXIF orientation 6
 *   alpha.png            100×100 fully transparent left half, opaque blue right half
 *   bomb.png             header says 60000×60000
 *   corrupt.jpg          JPEG magic followed by noise
 *   truncated.jpg        the first half of a real JPEG
 *   escape.png → ../outside/secret.png (symlink out of the root)
 *   name with spaces & ü.png
 */
export async function makeFixtures(): Promise<Fixtures> {
  const base = await mkdtemp(join(tmpdir(), 'iiif-test-'));
  const root = join(base, 'root');
  const outside = join(base, 'outside');
  await mkdir(join(root, 'deep', 'dir'), { recursive: true });
  await mkdir(outside);
  const chart = await quadrants();
  const chartJpeg = await sharp(chart).jpeg({ quality: 95 }).toBuffer();
  await writeFile(join(root, 'quadrants.png'), chart);
  await writeFile(join(root, 'noext'), chartJpeg);
  await writeFile(join(root, 'deep', 'dir', 'chart.png'), chart);
  await sharp(chart).tiff().toFile(join(root, 'chart.tif'));
  await writeFile(join(root, 'name with spaces & ü.png'), chart);
  await sharp(chart)
    .resize(2048, 1536, { fit: 'fill' })
    .tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg', quality: 95 })
    .toFile(join(root, 'pyramid.tif'));
  await sharp(gradient(2000, 1500), { raw: { width: 2000, height: 1500, channels: 3 } })
    .tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg', quality: 95 })
    .toFile(join(root, 'gradient.tif'));
  // Stored 100 wide and 200 high, red over blue; orientation 6 means "rotate 90° clockwise to
  // view", so a viewer sees 200×100 with blue on the left and red on the right.
  const sideways = await sharp({ create: { width: 100, height: 200, channels: 3, background: '#f00' } })
    .composite([{ input: await sharp({ create: { width: 100, height: 100, channels: 3, background: '#00f' } }).png().toBuffer(), left: 0, top: 100 }])
    .jpeg({ quality: 95 })
    .withMetadata({ orientation: 6 })
    .toBuffer();
  await writeFile(join(root, 'rotated.jpg'), sideways);
  await sharp({ create: { width: 100, height: 100, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } })
    .composite([{ input: await sharp({ create: { width: 50, height: 100, channels: 4, background: { r: 0, g: 0, b: 255, alpha: 1 } } }).png().toBuffer(), left: 50, top: 0 }])
    .png()
    .toFile(join(root, 'alpha.png'));
  await writeFile(join(root, 'bomb.png'), pngBomb(60_000, 60_000));
  await writeFile(join(root, 'corrupt.jpg'), Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(4096, 0x5a)]));
  await writeFile(join(root, 'truncated.jpg'), chartJpeg.subarray(0, Math.floor(chartJpeg.length / 2)));
  await writeFile(join(outside, 'secret.png'), chart);
  await symlink(join(outside, 'secret.png'), join(root, 'escape.png'));
  return { root, outside };
}

/** The colour of one pixel of an encoded image, as [r, g, b] (alpha dropped). */
export async function pixel(image: Buffer, x: number, y: number): Promise<number[]> {
  const { data, info } = await sharp(image).raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * info.channels;
  const rgb = info.channels >= 3 ? [data[i]!, data[i + 1]!, data[i + 2]!] : [data[i]!, data[i]!, data[i]!];
  return rgb;
}

/** Asserts helper: every channel within `tolerance` of the expected colour. */
export function near(actual: number[], expected: number[], tolerance = 40): boolean {
  return actual.every((value, i) => Math.abs(value - expected[i]!) <= tolerance);
}

/** Asserts that an encoded image shows the quadrant chart: red | green over blue | yellow. */
export async function expectQuadrantColours(image: Buffer): Promise<void> {
  const { width = 0, height = 0 } = await sharp(image).metadata();
  const at = (fx: number, fy: number) => pixel(image, Math.floor(width * fx), Math.floor(height * fy));
  const found = [await at(0.25, 0.25), await at(0.75, 0.25), await at(0.25, 0.75), await at(0.75, 0.75)];
  const expected = [RED, GREEN, BLUE, YELLOW];
  if (!found.every((colour, i) => near(colour, expected[i]!))) {
    throw new Error(`expected the quadrant chart, found ${JSON.stringify(found)}`);
  }
}
