import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jp2Available } from '../../src/image/jp2/decoder.js';
import { makeFixtures, pngBomb } from '../fixtures.js';
import { appFor } from './helpers.js';

// Broken and hostile files in a folder whose path is easy to spot (the many-scan JPEG, made with
// Debian's jpegtran, is in test/image/jpeg-scans.system.test.ts): every request for them is
// answered (a 4xx when the file cannot be served; never a 5xx, never a hang), and no error
// names a local path.

let root: string;
let app: FastifyInstance;
const FOLDER = 'secret server folder';
const files: Record<string, Buffer> = {};

beforeAll(async () => {
  const fixtures = await makeFixtures();
  root = join(fixtures.root, FOLDER);
  await mkdir(root);
  const jpeg = await sharp({ create: { width: 600, height: 400, channels: 3, background: '#369' } }).jpeg().toBuffer();
  const png = await sharp({ create: { width: 600, height: 400, channels: 3, background: '#369' } }).png().toBuffer();
  const tiled = await sharp({ create: { width: 1024, height: 1024, channels: 3, background: '#963' } })
    .tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg' })
    .toBuffer();
  const gif = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#0a0' } }).gif().toBuffer();
  const webp = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#0a0' } }).webp().toBuffer();
  Object.assign(files, {
    'empty.jpg': Buffer.alloc(0),
    'noise.bin': Buffer.alloc(5000, 0x5a),
    'corrupt.jpg': Buffer.concat([jpeg.subarray(0, 200), Buffer.alloc(4096, 0x33)]),
    'truncated.jpg': jpeg.subarray(0, jpeg.length >> 1),
    'header-only.jpg': jpeg.subarray(0, 600),
    'bad-crc.png': Buffer.concat([png.subarray(0, 40), Buffer.from([0, 0, 0, 0]), png.subarray(44)]),
    'truncated.png': png.subarray(0, png.length >> 1),
    'bomb.png': pngBomb(60_000, 60_000),
    'truncated.tif': tiled.subarray(0, tiled.length >> 1),
    'header-only.tif': tiled.subarray(0, 16),
    'garbage.tif': Buffer.concat([Buffer.from('II*\0'), Buffer.alloc(2000, 0xee)]),
    'truncated.gif': gif.subarray(0, gif.length >> 1),
    'truncated.webp': webp.subarray(0, webp.length >> 1),
    'fake.jp2': Buffer.concat([Buffer.from([0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]), Buffer.alloc(3000, 0x41)]),
    'fake.j2k': Buffer.concat([Buffer.from([0xff, 0x4f, 0xff, 0x51]), Buffer.alloc(100, 0x7f)]),
    'fake.avif': Buffer.concat([Buffer.from('\0\0\0\x20ftypavif'), Buffer.alloc(500, 1)]),
  });
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(root, name), bytes);
  app = await appFor(fixtures.root, { IIIF_PYRAMID_THRESHOLD_PIXELS: '100000' });
});
afterAll(() => app.close());

const REQUESTS = ['info.json', 'full/max/0/default.jpg', '0,0,256,256/256,/0/default.jpg', 'full/!100,100/45/gray.png', 'full/max/0/default.avif'];

describe('crafted and broken files', () => {
  it('never get a 5xx, and no error names a local path', async () => {
    const statuses = new Set<number>();
    for (const name of Object.keys(files)) {
      const id = encodeURIComponent(`${FOLDER}/${name}`);
      for (const request of REQUESTS) {
        const response = await app.inject({ url: `/iiif/3/${id}/${request}` });
        const what = `${name} ${request}: ${response.statusCode} ${response.body.slice(0, 300)}`;
        // Headers that read fine may well be served (libvips is tolerant); what matters is no 5xx,
        // but for the documented 501 of JPEG 2000 on a server built without its decoder.
        const unavailable = response.statusCode === 501 && /\.j(p2|2k)$/.test(name) && !jp2Available();
        if (!unavailable) expect(response.statusCode, what).toBeLessThan(500);
        if (response.statusCode >= 400) {
          statuses.add(response.statusCode);
          expect(response.body, what).not.toContain(root);
          expect(response.body, what).not.toMatch(/\/(?:tmp|root|home|var|usr|work)\//);
          expect(response.body, what).not.toContain(FOLDER + '/');
        }
      }
      const page = await app.inject({ url: `/viewer/${id}` });
      if (!(page.statusCode === 501 && !jp2Available())) expect(page.statusCode, name).toBeLessThan(500);
      expect(page.body, name).not.toContain(root);
    }
    // The refusals the files are made to provoke: unreadable (422) and too large (413).
    expect([...statuses].filter((status) => status !== 501).sort()).toEqual([413, 422]);
  }, 120_000);
});
