import { mkdtemp, readdir, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { expectQuadrantColours, makeFixtures, near, pixel, quadrants, RED } from '../fixtures.js';
import { appFor } from '../http/helpers.js';

let root: string;
const apps: FastifyInstance[] = [];

beforeAll(async () => {
  ({ root } = await makeFixtures());
  const raw = await sharp(await quadrants()).resize(3000, 2000, { fit: 'fill', kernel: 'nearest' }).removeAlpha().raw().toBuffer();
  await sharp(raw, { raw: { width: 3000, height: 2000, channels: 3 } }).jpeg({ quality: 92 }).toFile(join(root, 'big.jpg'));
});
afterEach(async () => {
  await Promise.all(apps.splice(0).map((app) => app.close()));
});

async function open(env: Record<string, string> = {}) {
  const app = await appFor(root, { IIIF_PYRAMID_THRESHOLD_PIXELS: '1000000', ...env });
  apps.push(app);
  return app;
}

const builds = async (app: FastifyInstance) =>
  Number(/^iiif_pyramid_builds_total\{result="built"\} (\d+)$/m.exec((await app.inject('/metrics')).body)?.[1] ?? 0);

describe('pyramids made on first touch', () => {
  it('converts a large plain JPEG once, however many requests arrive together, then reads the pyramid', async () => {
    const pyramidDir = await mkdtemp(join(tmpdir(), 'pyr-'));
    const app = await open({ IIIF_PYRAMID_DIR: pyramidDir });
    const responses = await Promise.all(
      Array.from({ length: 20 }, (_, i) => app.inject(i % 2 ? '/iiif/3/big.jpg/info.json' : '/iiif/3/big.jpg/0,0,1024,1024/256,256/0/default.jpg')),
    );
    expect(responses.map((r) => r.statusCode)).toEqual(Array(20).fill(200));
    expect(await builds(app)).toBe(1);
    expect((await readdir(pyramidDir)).filter((name) => name.endsWith('.data'))).toHaveLength(1);
    // Levels now come from the pyramid, and aligned tiles are its stored JPEG tiles.
    const info = responses[1]!.json();
    expect(info.tiles[0].scaleFactors).toEqual([1, 2, 4, 8, 16]);
    const tile = responses[0]!;
    expect(tile.headers['x-iiif-source-level']).toBe('2');
    expect(tile.headers['x-iiif-render']).toMatch(/^passthrough/);
    expect(near(await pixel(tile.rawPayload, 128, 128), RED)).toBe(true);
    await expectQuadrantColours((await app.inject('/iiif/3/big.jpg/full/600,/0/default.png')).rawPayload);
  });

  it('keeps its pyramids across a restart', async () => {
    const pyramidDir = await mkdtemp(join(tmpdir(), 'pyr-'));
    const first = await open({ IIIF_PYRAMID_DIR: pyramidDir });
    expect((await first.inject('/iiif/3/big.jpg/info.json')).statusCode).toBe(200);
    expect(await builds(first)).toBe(1);
    const second = await open({ IIIF_PYRAMID_DIR: pyramidDir });
    const tile = await second.inject('/iiif/3/big.jpg/0,0,2048,1536/256,192/0/default.jpg');
    expect(tile.headers['x-iiif-source-level']).toBe('3');
    expect(await builds(second)).toBe(0);
  });

  it('converts a large tiled TIFF whose second page is not a smaller copy (a scan of two pages)', async () => {
    const page = await sharp(await quadrants()).resize(1600, 1000, { fit: 'fill', kernel: 'nearest' }).removeAlpha().png().toBuffer();
    await sharp([page, page], { join: { animated: true } })
      .tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 90 })
      .toFile(join(root, 'two-pages.tif'));
    expect((await sharp(join(root, 'two-pages.tif')).metadata()).pages).toBe(2);
    const app = await open();
    const info = (await app.inject('/iiif/3/two-pages.tif/info.json')).json();
    expect([info.width, info.height]).toEqual([1600, 1000]);
    expect(await builds(app)).toBe(1);
    const small = await app.inject('/iiif/3/two-pages.tif/full/200,/0/default.jpg');
    expect(small.headers['x-iiif-source-level']).not.toBe('0');
  });

  it('leaves images below the threshold as they are', async () => {
    const app = await open({ IIIF_PYRAMID_THRESHOLD_PIXELS: '10000000' });
    const tile = await app.inject('/iiif/3/big.jpg/0,0,1024,1024/256,256/0/default.jpg');
    expect(tile.headers['x-iiif-source-level']).toBe('0');
    expect(await builds(app)).toBe(0);
  });

  it('rebuilds when the source changes', async () => {
    const app = await open({ IIIF_SOURCE_RECHECK_MS: '0' });
    await app.inject('/iiif/3/big.jpg/info.json');
    await utimes(join(root, 'big.jpg'), new Date(), new Date(Date.now() + 60_000));
    expect((await app.inject('/iiif/3/big.jpg/info.json')).statusCode).toBe(200);
    expect(await builds(app)).toBe(2);
  });
});
