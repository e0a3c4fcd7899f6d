import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLUE, GREEN, makeFixtures, near, pixel, RED, WHITE, YELLOW } from '../fixtures.js';
import { appFor } from './helpers.js';

let app: FastifyInstance;

beforeAll(async () => {
  const { root } = await makeFixtures();
  app = await appFor(root);
});
afterAll(() => app.close());

async function get(url: string, headers: Record<string, string> = {}) {
  return app.inject({ method: 'GET', url, headers });
}

async function image(url: string) {
  const response = await get(url);
  expect(response.statusCode, response.body).toBe(200);
  const meta = await sharp(response.rawPayload).metadata();
  return { response, data: response.rawPayload, meta };
}

/** Colour at the centre of each quadrant of an output image. */
async function quadrantColours(data: Buffer) {
  const { width = 0, height = 0 } = await sharp(data).metadata();
  const at = (fx: number, fy: number) => pixel(data, Math.floor(width * fx), Math.floor(height * fy));
  return { tl: await at(0.25, 0.25), tr: await at(0.75, 0.25), bl: await at(0.25, 0.75), br: await at(0.75, 0.75) };
}

function expectColours(actual: Record<string, number[]>, expected: Record<string, number[]>) {
  for (const [key, colour] of Object.entries(expected)) {
    expect(near(actual[key]!, colour), `${key} was ${actual[key]}, expected ${colour}`).toBe(true);
  }
}

describe.each([3, 2])('image requests, API %i', (version) => {
  const base = `/iiif/${version}/quadrants.png`;
  const full = version === 3 ? 'max' : 'full';

  it('full image keeps every quadrant in place', async () => {
    const { data, meta } = await image(`${base}/full/${full}/0/default.png`);
    expect([meta.width, meta.height, meta.format]).toEqual([400, 200, 'png']);
    expectColours(await quadrantColours(data), { tl: RED, tr: GREEN, bl: BLUE, br: YELLOW });
  });

  it('a pixel region returns exactly that area', async () => {
    const { data, meta } = await image(`${base}/200,0,200,100/${full}/0/default.png`);
    expect([meta.width, meta.height]).toEqual([200, 100]);
    expectColours(await quadrantColours(data), { tl: GREEN, br: GREEN });
  });

  it('a region across the centre shows all four colours', async () => {
    const { data, meta } = await image(`${base}/100,50,200,100/${full}/0/default.png`);
    expect([meta.width, meta.height]).toEqual([200, 100]);
    expectColours(await quadrantColours(data), { tl: RED, tr: GREEN, bl: BLUE, br: YELLOW });
  });

  it('a percent region', async () => {
    const { data, meta } = await image(`${base}/pct:50,50,50,50/${full}/0/default.png`);
    expect([meta.width, meta.height]).toEqual([200, 100]);
    expectColours(await quadrantColours(data), { tl: YELLOW, br: YELLOW });
  });

  it('square takes the centred square', async () => {
    const { data, meta } = await image(`${base}/square/${full}/0/default.png`);
    expect([meta.width, meta.height]).toEqual([200, 200]);
    expectColours(await quadrantColours(data), { tl: RED, tr: GREEN, bl: BLUE, br: YELLOW });
  });

  it('a region partly outside the image is cropped', async () => {
    const { meta } = await image(`${base}/300,150,500,500/${full}/0/default.png`);
    expect([meta.width, meta.height]).toEqual([100, 50]);
  });

  it.each([
    ['100,', 100, 50],
    [',50', 100, 50],
    ['pct:25', 100, 50],
    ['100,100', 100, 100],
    ['!100,100', 100, 50],
  ])('size %s → %i×%i', async (size, width, height) => {
    const { data, meta } = await image(`${base}/full/${size}/0/default.png`);
    expect([meta.width, meta.height]).toEqual([width, height]);
    expectColours(await quadrantColours(data), { tl: RED, tr: GREEN, bl: BLUE, br: YELLOW });
  });

  it.each([
    ['90', { tl: BLUE, tr: RED, bl: YELLOW, br: GREEN }, [200, 400]],
    ['180', { tl: YELLOW, tr: BLUE, bl: GREEN, br: RED }, [400, 200]],
    ['270', { tl: GREEN, tr: YELLOW, bl: RED, br: BLUE }, [200, 400]],
    ['!0', { tl: GREEN, tr: RED, bl: YELLOW, br: BLUE }, [400, 200]],
    ['!90', { tl: YELLOW, tr: GREEN, bl: BLUE, br: RED }, [200, 400]],
    ['!180', { tl: BLUE, tr: YELLOW, bl: RED, br: GREEN }, [400, 200]],
  ])('rotation %s', async (rotation, colours, dims) => {
    const { data, meta } = await image(`${base}/full/${full}/${rotation}/default.png`);
    expect([meta.width, meta.height]).toEqual(dims);
    expectColours(await quadrantColours(data), colours);
  });

  it('arbitrary rotation enlarges the canvas and fills with transparency in png', async () => {
    const { data, meta } = await image(`${base}/full/${full}/45/default.png`);
    // The bounding box of a 400×200 rectangle turned 45°: (400+200)/√2 ≈ 424 on each side.
    expect(Math.abs(meta.width! - 424)).toBeLessThanOrEqual(2);
    expect(Math.abs(meta.height! - 424)).toBeLessThanOrEqual(2);
    const { data: raw, info } = await sharp(data).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    expect(raw[3]).toBe(0); // top-left corner is outside the turned image
    const centre = ((info.height >> 1) * info.width + (info.width >> 1)) * 4;
    expect(raw[centre + 3]).toBe(255);
  });

  it('arbitrary rotation fills with white in jpg', async () => {
    const { data } = await image(`${base}/full/${full}/45/default.jpg`);
    expect(near(await pixel(data, 2, 2), WHITE, 10)).toBe(true);
  });

  it('mirroring happens before rotation', async () => {
    // Mirror: green|red over yellow|blue. Then 90° clockwise: yellow|green over blue|red.
    const { data } = await image(`${base}/full/${full}/!90/default.png`);
    expectColours(await quadrantColours(data), { tl: YELLOW, tr: GREEN, bl: BLUE, br: RED });
  });

  it('gray quality has no colour', async () => {
    const { data, meta } = await image(`${base}/full/${full}/0/gray.png`);
    expect(meta.channels).toBeLessThanOrEqual(2);
    const [r, g, b] = await pixel(data, 50, 50);
    expect(r).toBe(g);
    expect(g).toBe(b);
  });

  it('bitonal quality has only black and white', async () => {
    const { data } = await image(`${base}/full/${full}/0/bitonal.png`);
    const { data: raw } = await sharp(data).greyscale().raw().toBuffer({ resolveWithObject: true });
    expect(new Set(raw)).toEqual(new Set([0, 255]));
    // Yellow is light, blue is dark.
    expect((await pixel(data, 300, 150))[0]).toBe(255);
    expect((await pixel(data, 100, 150))[0]).toBe(0);
  });

  it('color quality is the same as default', async () => {
    const { data } = await image(`${base}/full/${full}/0/color.png`);
    expectColours(await quadrantColours(data), { tl: RED, tr: GREEN, bl: BLUE, br: YELLOW });
  });

  it.each([
    ['jpg', 'jpeg', 'image/jpeg'],
    ['png', 'png', 'image/png'],
    ['webp', 'webp', 'image/webp'],
    ['gif', 'gif', 'image/gif'],
    ['tif', 'tiff', 'image/tiff'],
    ['avif', 'heif', 'image/avif'],
  ])('format %s', async (extension, sharpFormat, mediaType) => {
    const { response, data, meta } = await image(`${base}/full/100,/0/default.${extension}`);
    expect(response.headers['content-type']).toBe(mediaType);
    expect(meta.format).toBe(sharpFormat);
    expect([meta.width, meta.height]).toEqual([100, 50]);
    expect(near(await pixel(data, 25, 12), RED, 60)).toBe(true);
  });
});

describe('source handling', () => {
  it('applies EXIF orientation to size and pixels, and strips it from the output', async () => {
    const info = JSON.parse((await get('/iiif/3/rotated.jpg/info.json')).body);
    expect([info.width, info.height]).toEqual([200, 100]);
    const { data, meta } = await image('/iiif/3/rotated.jpg/full/max/0/default.jpg');
    expect([meta.width, meta.height]).toEqual([200, 100]);
    expect(meta.orientation).toBeUndefined();
    expect(meta.exif).toBeUndefined();
    expect(near(await pixel(data, 50, 50), BLUE)).toBe(true);
    expect(near(await pixel(data, 150, 50), RED)).toBe(true);
    const region = await image('/iiif/3/rotated.jpg/100,0,100,100/max/0/default.jpg');
    expect(near(await pixel(region.data, 50, 50), RED)).toBe(true);
  });

  it('flattens transparency onto white for jpg and keeps it for png', async () => {
    const jpg = await image('/iiif/3/alpha.png/full/max/0/default.jpg');
    expect(near(await pixel(jpg.data, 25, 50), WHITE, 5)).toBe(true);
    const png = await image('/iiif/3/alpha.png/full/max/0/default.png');
    expect(png.meta.hasAlpha).toBe(true);
  });

  it('outputs sRGB', async () => {
    const { meta } = await image('/iiif/3/quadrants.png/full/max/0/default.jpg');
    expect(meta.space).toBe('srgb');
    expect(meta.icc).toBeUndefined();
  });

  it('reads a pyramidal TIFF from the smallest level that is large enough', async () => {
    const info = JSON.parse((await get('/iiif/3/pyramid.tif/info.json')).body);
    expect(info.tiles[0].scaleFactors).toEqual([1, 2, 4, 8]);
    const level = async (url: string) => (await image(url)).response.headers['x-iiif-source-level'];
    expect(await level('/iiif/3/pyramid.tif/0,0,256,256/256,256/0/default.jpg')).toBe('0');
    expect(await level('/iiif/3/pyramid.tif/0,0,512,512/256,256/0/default.jpg')).toBe('1');
    expect(await level('/iiif/3/pyramid.tif/0,0,1024,1024/256,256/0/default.jpg')).toBe('2');
    expect(await level('/iiif/3/pyramid.tif/full/256,192/0/default.jpg')).toBe('3');
    // Slightly more than a level offers must come from the level above.
    expect(await level('/iiif/3/pyramid.tif/full/257,/0/default.jpg')).toBe('2');
    const tile = await image('/iiif/3/pyramid.tif/1024,0,1024,768/256,192/0/default.png');
    expect(near(await pixel(tile.data, 128, 96), GREEN)).toBe(true);
  });
});
