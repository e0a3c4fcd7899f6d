/**
 * Where a viewer tile over stored JPEG tiles spends its CPU (`npm run bench:steps`), one step at
 * a time and one request at a time, on the pyramids of W8 and W9 (bench/images.ts): reading the
 * stored tiles, making them standalone JPEGs (what a cut and sharp read); the compressed-domain cut in JavaScript and in
 * C++ (native/jpegtiles); the cut decoded, cropped and encoded by sharp (the way W9 went before
 * the native renderer); and the native renderer (libjpeg-turbo decoding only what the region
 * needs from the tiles as stored, then encoding). CPU time of the whole process per request, over 400 requests.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { bufferReader } from '../src/source/range-reader.js';
import { cutJpegTiles } from '../src/image/tiles/jpeg-crop.js';
import { nativeJpegAvailable, renderJpegTiles } from '../src/image/tiles/jpeg-native.js';
import { locateTiles, type TileSpot } from '../src/image/tiles/locate.js';
import { readStoredTiles, standaloneTiles } from '../src/image/tiles/stored-jpegs.js';
import { TiffLayout } from '../src/image/tiles/tiff-layout.js';
import { ensureBenchImages, FOREIGN_PYRAMIDS } from './images.js';
import { benchDataDir, machine } from './run.js';

const REQUESTS = 400;
const WARM_UP = 40;
const QUALITY = 85;

interface Case {
  name: string;
  file: string;
  /** Viewer tile size at full resolution (level 0). */
  size: number;
  /** Which regions: on the stored tiles' 16-px block grid, or off any 8-px grid. */
  aligned: boolean;
}

const CASES: Case[] = [
  { name: 'W9: 300-px tiles over 256-px RGB Q 90, off the block grid', file: FOREIGN_PYRAMIDS.vipsRgb[0]!, size: 300, aligned: false },
  { name: 'W9: 300-px tiles over 256-px RGB Q 90, on the block grid', file: FOREIGN_PYRAMIDS.vipsRgb[0]!, size: 300, aligned: true },
  { name: 'W8: 256-px tiles over 128-px YCbCr Q 75', file: FOREIGN_PYRAMIDS.vipsDefault[0]!, size: 256, aligned: true },
];

const cpuMs = () => {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
};

/** CPU ms per request of `step` over every request (after a warm-up), and how many it declined (a cut over 256 KB of tiles). */
async function measure(count: number, step: (index: number) => Promise<boolean> | boolean): Promise<{ ms: number; declined: number }> {
  for (let i = 0; i < WARM_UP; i++) await step(i % count);
  let declined = 0;
  const start = cpuMs();
  for (let i = 0; i < count; i++) if (!(await step(i))) declined++;
  return { ms: (cpuMs() - start) / count, declined };
}

async function main(): Promise<void> {
  const dataDir = await ensureBenchImages(benchDataDir(), (line) => console.log(line));
  sharp.concurrency(1);
  sharp.cache(false);
  console.log(`${machine()}; native renderer ${nativeJpegAvailable() ? 'built' : 'NOT built'}`);
  for (const { name, file, size, aligned } of CASES) {
    const reader = bufferReader(await readFile(join(dataDir, file)));
    const page = (await (await TiffLayout.open(reader))!.page(0))!;
    const level = { page: 0, width: page.width, height: page.height, tiles: page };
    const spots: TileSpot[] = [];
    for (let y = 0; y + size <= page.height && spots.length < REQUESTS; y += size) {
      for (let x = 0; x + size <= page.width && spots.length < REQUESTS; x += size) {
        if (aligned ? x % 16 !== 0 || y % 16 !== 0 : x % 8 === 0 || y % 8 === 0) continue;
        spots.push(locateTiles({ width: size, height: size }, { level, region: { x, y, width: size, height: size } }, page)!);
      }
    }
    const stored = await Promise.all(spots.map((spot) => readStoredTiles(reader, spot)));
    const tiles = stored.map((group) => standaloneTiles(group, page)!);
    const bytes = tiles.reduce((sum, group) => sum + group.reduce((s, tile) => s + tile.length, 0), 0) / tiles.length;
    const steps: Array<[string, (i: number) => Promise<boolean> | boolean]> = [
      ['read the stored tiles', async (i) => (await readStoredTiles(reader, spots[i]!)).length > 0],
      ['make them standalone JPEGs (for a cut or sharp)', (i) => standaloneTiles(stored[i]!, page) !== undefined],
      ['cut, JavaScript', (i) => cutJpegTiles(tiles[i]!, spots[i]!.across, spots[i]!.crop, false) !== undefined],
      ['cut, C++', (i) => cutJpegTiles(tiles[i]!, spots[i]!.across, spots[i]!.crop, true) !== undefined],
      [
        'cut (JavaScript) + sharp decode, crop, encode',
        async (i) => {
          const cut = cutJpegTiles(tiles[i]!, spots[i]!.across, spots[i]!.crop, false);
          if (!cut) return false;
          const region = { left: cut.x, top: cut.y, width: size, height: size };
          await sharp(cut.jpeg).extract(region).resize(size, size, { fit: 'fill' }).toColourspace('srgb').jpeg({ quality: QUALITY, optimiseCoding: false }).toBuffer();
          return true;
        },
      ],
      ['native: libjpeg-turbo decode of what the region needs + encode', async (i) => (await renderJpegTiles(stored[i]!, spots[i]!, QUALITY, 1e8)).length > 0],
    ];
    console.log(`\n${name}: ${spots.length} requests, ${spots[0]!.indexes.length} stored tiles each, ${Math.round(bytes / 1024)} KB of them`);
    for (const [label, step] of steps) {
      if (!nativeJpegAvailable() && (label.includes('C++') || label.startsWith('native'))) continue;
      const { ms, declined } = await measure(spots.length, step);
      console.log(`  ${label.padEnd(66)} ${ms.toFixed(2)} ms CPU${declined ? ` (${declined} declined)` : ''}`);
    }
  }
}

await main();
