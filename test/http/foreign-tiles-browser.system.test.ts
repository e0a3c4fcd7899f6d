/**
 * Stored tiles sent as they are, decoded by a real browser (Debian's Chromium, driven by
 * playwright-core): the pixels it shows are libtiff's. Includes RGB tiles whose component ids a
 * decoder cannot read as RGB on its own (0, 1, 2), which only the Adobe marker makes right.
 */
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readTiffLayout } from '../../src/image/tiles/tiff-layout.js';
import { difference, FOREIGN, libtiffPage, makeForeignPyramids, type Raster } from '../image/tiles/foreign-pyramids.js';
import { jpegPageTags, TiffBuilder } from '../tiff-builder.js';
import { appFor } from './helpers.js';
import { localFile } from '../image/local-file.js';

let folder: string;
let app: FastifyInstance;
let base: string;
let browser: Browser;

/** vips-rgb.tif's first page again, its tiles' component ids 'R', 'G', 'B' changed to 0, 1, 2. */
async function anonymousRgb(): Promise<void> {
  const source = join(folder, 'vips-rgb.tif');
  const page = (await readTiffLayout((await localFile(source)).reader))![0]!;
  const bytes = await readFile(source);
  const file = new TiffBuilder();
  const offsets: number[] = [];
  const counts: number[] = [];
  for (const [i, offset] of page.tileOffsets.entries()) {
    const tile = Buffer.from(bytes.subarray(offset, offset + page.tileByteCounts[i]!));
    for (const marker of [0xc0, 0xda]) {
      const at = tile.indexOf(Buffer.from([0xff, marker]));
      const first = marker === 0xc0 ? at + 10 : at + 5;
      const step = marker === 0xc0 ? 3 : 2;
      for (let c = 0; c < 3; c++) tile[first + c * step] = c;
    }
    offsets.push(file.data(tile));
    counts.push(tile.length);
  }
  file.directory(jpegPageTags({ width: page.width, height: page.height, tileSize: 256, photometric: 2, samples: 3, offsets, counts, jpegTables: page.jpegTables! }));
  await writeFile(join(folder, 'anonymous-rgb.tif'), file.build());
}

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'foreign-browser-'));
  await makeForeignPyramids(folder);
  await anonymousRgb();
  app = await appFor(folder);
  base = await app.listen({ port: 0, host: '127.0.0.1' });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await app?.close();
});

interface BrowserGlobals {
  createImageBitmap(image: Blob, options: object): Promise<{ width: number; height: number }>;
  OffscreenCanvas: new (width: number, height: number) => {
    getContext(kind: '2d'): { drawImage(image: object, x: number, y: number): void; getImageData(x: number, y: number, width: number, height: number): { data: Uint8ClampedArray } };
  };
}

/** What the browser shows for an image URL: its pixels as decoded and drawn, without colour conversion. */
async function browserPixels(url: string): Promise<Raster> {
  const page = await browser.newPage();
  try {
    await page.goto(`${base}/health`);
    const { width, height, rgba } = await page.evaluate(async (src) => {
      // Browser globals, which this project's TypeScript (Node's types only) does not declare.
      const web = globalThis as unknown as BrowserGlobals;
      const bitmap = await web.createImageBitmap(await (await fetch(src)).blob(), { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
      const canvas = new web.OffscreenCanvas(bitmap.width, bitmap.height);
      const context = canvas.getContext('2d');
      context.drawImage(bitmap, 0, 0);
      const data = context.getImageData(0, 0, bitmap.width, bitmap.height).data;
      let binary = '';
      for (let i = 0; i < data.length; i++) binary += String.fromCharCode(data[i]!);
      return { width: bitmap.width, height: bitmap.height, rgba: btoa(binary) };
    }, url);
    return { data: Buffer.from(rgba, 'base64'), width, height, channels: 4 };
  } finally {
    await page.close();
  }
}

const cases = [
  ...FOREIGN.filter((foreign) => foreign.tileSize === 256).map((foreign) => ({ name: foreign.name, writer: foreign.writer })),
  { name: 'anonymous-rgb.tif', writer: 'RGB tiles with component ids 0, 1, 2 (read as YCbCr without a marker)' },
];

describe('stored tiles in a browser', () => {
  for (const { name, writer } of cases) {
    it(`${writer}: a whole tile and an edge tile show libtiff's pixels`, async () => {
      const reference = await libtiffPage(join(folder, name), 0, folder);
      for (const [region, method] of [['256,256,256,256', 'passthrough'], ['1280,768,220,256', 'cut']] as const) {
        const [x, y, w, h] = region.split(',').map(Number);
        if (x! + w! > reference.width || y! + h! > reference.height) continue; // cjpeg's smaller image
        const url = `/iiif/3/${name}/${region}/${w},${h}/0/default.jpg`;
        const response = await app.inject({ url });
        expect(response.headers['x-iiif-render'], url).toMatch(new RegExp(`^${method}`));
        const shown = await browserPixels(url);
        expect([shown.width, shown.height]).toEqual([w, h]);
        const grey = reference.channels === 1;
        const { mean } = difference(grey ? { ...shown, data: Buffer.from(shown.data.filter((_, i) => i % 4 === 0)), channels: 1 } : shown, reference, x!, y!);
        expect(mean, url).toBeLessThan(1.5);
      }
    });
  }
});
