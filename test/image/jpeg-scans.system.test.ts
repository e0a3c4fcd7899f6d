import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { manyScanJpeg } from '../../bench/crafted.js';
import { countJpegScans } from '../../src/image/metadata/jpeg-scans.js';
import { LocalFiles } from '../../src/source/local-files.js';
import { bufferReader } from '../../src/source/range-reader.js';
import { makeFixtures } from '../fixtures.js';
import { appFor } from '../http/helpers.js';

const run = promisify(execFile);

let root: string;
let crafted: Buffer;
let baseline: Buffer;
beforeAll(async () => {
  ({ root } = await makeFixtures());
  // 2,090 legal scans: every one a pass over the whole image when decoding.
  crafted = await manyScanJpeg(1000, 1000);
  await writeFile(join(root, 'scans.jpg'), crafted);
  baseline = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#3366cc' } }).jpeg().toBuffer();
  // An ordinary progressive JPEG large enough to be worth a pyramid.
  await sharp({ create: { width: 1200, height: 1000, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 30 } } })
    .jpeg({ progressive: true, quality: 80 })
    .toFile(join(root, 'progressive.jpg'));
});

describe('counting scans', () => {
  it('counts the scans of baseline, progressive and crafted files, from a file or from memory', async () => {
    expect(await countJpegScans(bufferReader(baseline), 100)).toBe(1);
    const script = join(root, 'five.txt');
    await writeFile(script, '0,1,2: 0-0, 0, 1;\n0,1,2: 0-0, 1, 0;\n0: 1-63, 0, 0;\n1: 1-63, 0, 0;\n2: 1-63, 0, 0;\n');
    await writeFile(join(root, 'baseline.jpg'), baseline);
    const { stdout } = await run('jpegtran', ['-scans', script, join(root, 'baseline.jpg')], { encoding: 'buffer' });
    expect(await countJpegScans(bufferReader(stdout), 100)).toBe(5);
    expect(await countJpegScans(bufferReader(crafted), 100_000)).toBe(2090);
    // Read from a file in 64 KiB pieces, segments and scans straddle the pieces.
    const files = new LocalFiles(4);
    expect(await countJpegScans(files.file(join(root, 'scans.jpg'), crafted.length, 'v1').reader, 100_000)).toBe(2090);
    files.clear();
  });

  it('stops counting past the limit', async () => {
    expect(await countJpegScans(bufferReader(crafted), 100)).toBe(101);
  });

  it('ignores scan markers inside segments (an EXIF thumbnail) and survives damaged files', async () => {
    // An APP1 segment whose payload is a whole JPEG, SOS included, as EXIF thumbnails are.
    const app1 = Buffer.concat([Buffer.from([0xff, 0xe1]), Buffer.alloc(2), baseline]);
    app1.writeUInt16BE(app1.length - 2, 2);
    const withThumbnail = Buffer.concat([baseline.subarray(0, 2), app1, baseline.subarray(2)]);
    expect(await countJpegScans(bufferReader(withThumbnail), 100)).toBe(1);
    expect(await countJpegScans(bufferReader(baseline.subarray(0, baseline.length / 2)), 100)).toBe(1);
    expect(await countJpegScans(bufferReader(Buffer.from([0xff, 0xd8, 0xff, 0xda])), 100)).toBe(1);
    expect(await countJpegScans(bufferReader(Buffer.alloc(1000, 0xff)), 100)).toBe(0);
  });
});

describe('serving', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    app = await appFor(root);
  });
  afterAll(() => app.close());

  const metric = async (pattern: RegExp) => Number(pattern.exec((await app.inject({ url: '/metrics' })).body)?.[1] ?? 0);

  it('refuses a JPEG of too many scans (422) from its markers, before decoding any of it', async () => {
    const tiles = await Promise.all(Array.from({ length: 8 }, (_, i) => app.inject({ url: `/iiif/3/scans.jpg/${i * 100},0,100,100/100,/0/default.jpg` })));
    for (const tile of tiles) {
      expect(tile.statusCode).toBe(422);
      expect(tile.body).toMatch(/more than 100 scans/);
    }
    expect((await app.inject({ url: '/iiif/3/scans.jpg/info.json' })).statusCode).toBe(422);
    expect(await metric(/^iiif_render_seconds_count\{format="jpg"\} (\d+)/m)).toBe(0);
    expect(await metric(/^iiif_pyramid_builds_total\{result="built"\} (\d+)/m)).toBe(0);
  });

  it('a progressive JPEG above a megapixel gets a pyramid on first touch; its tiles are then stored tiles', async () => {
    const info = await app.inject({ url: '/iiif/3/progressive.jpg/info.json' });
    expect(info.statusCode).toBe(200);
    expect(await metric(/^iiif_pyramid_builds_total\{result="built"\} (\d+)/m)).toBe(1);
    const tile = await app.inject({ url: '/iiif/3/progressive.jpg/256,256,256,256/256,/0/default.jpg' });
    expect(tile.statusCode).toBe(200);
    expect(tile.headers['x-iiif-render']).toMatch(/^passthrough/);
  });

  it('serves the crafted file when the limit allows it, through its pyramid', async () => {
    const lenient = await appFor(root, { IIIF_MAX_JPEG_SCANS: '5000', IIIF_PYRAMID_THRESHOLD_PIXELS: '500000' });
    try {
      expect((await lenient.inject({ url: '/iiif/3/scans.jpg/0,0,256,256/256,/0/default.jpg' })).statusCode).toBe(200);
    } finally {
      await lenient.close();
    }
  });
});
