import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { IiifError } from '../../src/errors.js';
import { parseImageRequest } from '../../src/iiif/parse.js';
import { planRender } from '../../src/iiif/plan.js';
import { laneFor, renderCost } from '../../src/image/cost.js';
import { renderFrom } from '../../src/image/render/render.js';
import { makeFixtures } from '../fixtures.js';
import { appFor } from '../http/helpers.js';

const DEFAULTS = { renderMemoryBytes: 2 ** 30, renderTimeoutSeconds: 20, largeRenderPixels: 2 ** 20 };
const LIMITS = { maxWidth: 10_000, maxHeight: 10_000, maxArea: 25_000_000 };
const PLASMA = { width: 2400, height: 1600 };

/** The cost of a request on a 2400×1600 image read at full size. */
function cost(size: string, rotation: string, qualityAndFormat: string) {
  const plan = planRender(3, parseImageRequest(3, 'full', size, rotation, qualityAndFormat), PLASMA, LIMITS);
  return { plan, cost: renderCost(plan, { region: plan.region }) };
}

function refusal(size: string, qualityAndFormat: string): string {
  const { plan, cost: estimate } = cost(size, '0', qualityAndFormat);
  try {
    laneFor(estimate, plan.format, DEFAULTS);
  } catch (error) {
    if (error instanceof IiifError) return `${error.statusCode} ${error.message}`;
    throw error;
  }
  return 'admitted';
}

describe('encoder-aware cost', () => {
  it('counts what AVIF and GIF really hold: a 25 megapixel AVIF is about 800 MB, not 115', () => {
    const avif = cost('^max', '0', 'default.avif').cost;
    const jpg = cost('^max', '0', 'default.jpg').cost;
    expect(avif.memoryBytes).toBeGreaterThan(800e6);
    expect(jpg.memoryBytes).toBeLessThan(150e6);
  });

  it('refuses at once (413) the renders measured at 17–31 s: full/^max as avif, full/max as gif', () => {
    expect(refusal('^max', 'default.avif')).toMatch(/^413 this request would take about \d+ s to render as avif, more than the 20 s a render may take; ask for a smaller size, or jpg, png or webp$/);
    expect(refusal('max', 'default.gif')).toMatch(/^413 .* as gif/);
    // The same sizes as JPEG fit easily.
    expect(refusal('^max', 'default.jpg')).toBe('admitted');
    expect(refusal('!800,800', 'default.gif')).toBe('admitted');
  });

  it('sends slow encoders to the expensive lane even for tile-sized output', () => {
    const lane = (qualityAndFormat: string) => {
      const { plan, cost: estimate } = cost('256,', '0', qualityAndFormat);
      return laneFor(estimate, plan.format, DEFAULTS);
    };
    expect(lane('default.jpg')).toBe('cheap');
    expect(lane('default.png')).toBe('cheap');
    expect(lane('default.avif')).toBe('expensive');
    expect(lane('default.gif')).toBe('expensive');
  });

  it('prices OpenJPEG, which cannot be stopped either: a 25 megapixel JPEG 2000 region is refused, a tile is cheap', () => {
    const region = (width: number, height: number) => ({ region: { x: 0, y: 0, width, height } });
    const plan = planRender(3, parseImageRequest(3, 'full', 'max', '0', 'default.jpg'), { width: 6000, height: 4500 }, LIMITS);
    expect(() => laneFor(renderCost(plan, region(6000, 4500), 'openjpeg'), plan.format, DEFAULTS)).toThrow(/about \d+ s to render as jpg/);
    expect(laneFor(renderCost(plan, region(6000, 4500), 'libvips'), plan.format, DEFAULTS)).toBe('expensive');
    const tile = planRender(3, parseImageRequest(3, '0,0,256,256', 'max', '0', 'default.jpg'), { width: 6000, height: 4500 }, LIMITS);
    expect(laneFor(renderCost(tile, region(256, 256), 'openjpeg'), tile.format, DEFAULTS)).toBe('cheap');
  });

  it('prices the rotated canvas, which is what gets encoded', () => {
    const straight = cost('2000,', '0', 'default.png').cost;
    const turned = cost('2000,', '45', 'default.png').cost;
    expect(turned.seconds).toBeGreaterThan(straight.seconds * 1.6);
    expect(turned.memoryBytes).toBeGreaterThan(straight.memoryBytes * 1.6);
  });
});

describe('through the server', () => {
  let app: FastifyInstance;
  beforeAll(async () => {
    const { root } = await makeFixtures();
    await sharp({ create: { width: 2400, height: 1600, channels: 3, background: '#4080c0' } }).jpeg().toFile(join(root, 'plasma.jpg'));
    app = await appFor(root);
  });
  afterAll(() => app.close());

  it.each(['full/^max/0/default.avif', 'full/^max/0/default.gif', 'full/max/0/default.gif', 'full/^4000,/22.5/default.gif'])('%s is 413 before any pixel is decoded', async (params) => {
    for (const method of ['GET', 'HEAD'] as const) {
      const response = await app.inject({ method, url: `/iiif/3/plasma.jpg/${params}` });
      expect(response.statusCode).toBe(413);
    }
    const metrics = (await app.inject({ url: '/metrics' })).body;
    expect(metrics).not.toMatch(/iiif_render_seconds_count\{format="(gif|avif)"\} [1-9]/);
  });
});

describe('the render deadline', () => {
  it('a pipeline still running at its deadline is stopped and answered 503 with Retry-After', async () => {
    const noise = sharp({ create: { width: 1000, height: 1000, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 60 } } });
    const input = sharp(await noise.png().toBuffer());
    // A 25 megapixel PNG of noise takes several seconds; the deadline is one.
    const plan = planRender(3, parseImageRequest(3, 'full', '^5000,5000', '0', 'default.png'), { width: 1000, height: 1000 }, LIMITS);
    const outcome = await renderFrom(input, undefined, plan, 0, loadConfig({}).encoding, { seconds: 1, retryAfterSeconds: 3 }).catch((error: unknown) => error);
    expect(outcome).toBeInstanceOf(IiifError);
    expect(outcome).toMatchObject({ statusCode: 503, headers: { 'retry-after': '3' } });
    expect((outcome as Error).message).toMatch(/took longer than the 1 s allowed/);
  });
});
