import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { IiifError } from '../../src/errors.js';
import { parseImageRequest } from '../../src/iiif/parse.js';
import { formatDecimal } from '../../src/iiif/numbers.js';
import { planRender } from '../../src/iiif/plan.js';
import type { ApiVersion } from '../../src/iiif/request.js';

const image = { width: 4000, height: 3000 };
const limits = { maxWidth: 5000, maxHeight: 5000, maxArea: 16_000_000 };

function plan(path: string, version: ApiVersion = 3, dims = image) {
  const [region, size, rotation, qf] = path.split('/') as [string, string, string, string];
  return planRender(version, parseImageRequest(version, region, size, rotation, qf), dims, limits);
}

function failure(path: string, version: ApiVersion = 3, dims = image): string {
  try {
    plan(path, version, dims);
  } catch (error) {
    if (error instanceof IiifError) return `${error.statusCode} ${error.message}`;
    throw error;
  }
  throw new Error(`expected ${path} to fail`);
}

describe('regions', () => {
  it('full covers the image', () => {
    expect(plan('full/max/0/default.jpg').region).toEqual({ x: 0, y: 0, width: 4000, height: 3000 });
  });

  it('square is the largest centred square', () => {
    expect(plan('square/max/0/default.jpg').region).toEqual({ x: 500, y: 0, width: 3000, height: 3000 });
    expect(plan('square/max/0/default.jpg', 3, { width: 300, height: 1001 }).region).toEqual({ x: 0, y: 350, width: 300, height: 300 });
  });

  it('pixel regions partly outside are cropped to the image', () => {
    expect(plan('3800,2900,500,500/max/0/default.jpg').region).toEqual({ x: 3800, y: 2900, width: 200, height: 100 });
  });

  it('percent regions scale with the image', () => {
    expect(plan('pct:25,50,50,50/max/0/default.jpg').region).toEqual({ x: 1000, y: 1500, width: 2000, height: 1500 });
  });

  it('regions starting outside the image are 400', () => {
    expect(failure('4000,0,10,10/max/0/default.jpg')).toMatch(/^400 region starts outside/);
    expect(failure('0,3000,10,10/max/0/default.jpg')).toMatch(/^400/);
    expect(failure('pct:100,0,10,10/max/0/default.jpg')).toMatch(/^400/);
  });
});

describe('sizes (3.0)', () => {
  it.each([
    ['0,0,1000,500/500,/0/default.jpg', 500, 250],
    ['0,0,1000,500/,100/0/default.jpg', 200, 100],
    ['0,0,1000,500/pct:10/0/default.jpg', 100, 50],
    ['0,0,1000,500/300,300/0/default.jpg', 300, 300],
    ['0,0,1000,500/!300,300/0/default.jpg', 300, 150],
    ['0,0,1000,500/!3000,300/0/default.jpg', 600, 300],
    ['0,0,1000,500/!3000,3000/0/default.jpg', 1000, 500],
    ['0,0,1000,500/^!3000,3000/0/default.jpg', 3000, 1500],
    ['0,0,1000,500/^2000,/0/default.jpg', 2000, 1000],
    ['0,0,1000,500/^pct:200/0/default.jpg', 2000, 1000],
    ['0,0,1000,500/max/0/default.jpg', 1000, 500],
    ['0,0,1000,500/^max/0/default.jpg', 5000, 2500],
  ])('%s → %i×%i', (path, width, height) => {
    const result = plan(path);
    expect([result.width, result.height]).toEqual([width, height]);
  });

  it('max is limited by maxArea while keeping the aspect ratio', () => {
    const result = plan('full/max/0/default.jpg', 3, { width: 8000, height: 6000 });
    expect(result.width * result.height).toBeLessThanOrEqual(limits.maxArea);
    expect(result.width).toBe(4618);
    expect(Math.abs(result.width / result.height - 4 / 3)).toBeLessThan(0.001);
  });

  it('refuses upscaling without ^', () => {
    expect(failure('0,0,100,100/200,/0/default.jpg')).toMatch(/^400 .*larger than the region.*\^/);
    expect(failure('0,0,100,100/pct:101/0/default.jpg')).toMatch(/^400/);
    expect(failure('0,0,100,100/100,101/0/default.jpg')).toMatch(/^400/);
  });

  it('refuses sizes beyond the limits, with or without ^', () => {
    expect(failure('full/5001,/0/default.jpg', 3, { width: 6000, height: 100 })).toMatch(/^400 .*exceeds the limit/);
    expect(failure('full/^6000,4000/0/default.jpg')).toMatch(/^400 .*exceeds the limit/);
    expect(failure('full/^4500,4500/0/default.jpg')).toMatch(/^400 .*16000000 pixels/);
  });

  it('refuses sizes that round to nothing', () => {
    expect(failure('0,0,1000,1/10,/0/default.jpg')).toMatch(/^400 .*less than one pixel/);
  });
});

describe('sizes (2.1)', () => {
  it('full is the region size and upscaling needs no ^', () => {
    expect(plan('0,0,100,50/full/0/default.jpg', 2)).toMatchObject({ width: 100, height: 50 });
    expect(plan('0,0,100,50/200,/0/default.jpg', 2)).toMatchObject({ width: 200, height: 100 });
    expect(plan('0,0,100,50/!400,400/0/default.jpg', 2)).toMatchObject({ width: 400, height: 200 });
  });

  it('full beyond the limits is 400 while max scales down', () => {
    expect(failure('full/full/0/default.jpg', 2, { width: 8000, height: 6000 })).toMatch(/^400/);
    expect(plan('full/max/0/default.jpg', 2, { width: 8000, height: 6000 }).width).toBe(4618);
  });
});

describe('rotation', () => {
  it('keeps mirror and normalises 360 to 0', () => {
    expect(plan('full/max/!360/default.jpg')).toMatchObject({ mirror: true, degrees: 0 });
    expect(plan('full/max/22.5/default.png')).toMatchObject({ mirror: false, degrees: 22.5 });
  });

  it('the limits apply to the rotated canvas: ^10000,2500 turned 45° is 8839×8839, 3.1× maxArea (the attack)', () => {
    const limits = { maxWidth: 10_000, maxHeight: 10_000, maxArea: 25_000_000 };
    const request = parseImageRequest(3, 'full', '^10000,2500', '45', 'default.png');
    expect(() => planRender(3, request, { width: 2400, height: 1600 }, limits)).toThrow(/rotated to 8839×8839, exceeds the limit of 25000000 pixels/);
    // Unrotated, the same size is within the limits.
    expect(planRender(3, parseImageRequest(3, 'full', '^10000,2500', '0', 'default.png'), { width: 2400, height: 1600 }, limits).canvas).toEqual({ width: 10_000, height: 2500 });
  });

  it('right angles swap the sides, so maxWidth and maxHeight apply to the image as sent', () => {
    const tall = { maxWidth: 1000, maxHeight: 2000, maxArea: 10_000_000 };
    const request = (rotation: string) => parseImageRequest(3, 'full', '1500,', rotation, 'default.jpg');
    expect(planRender(3, request('0'), { width: 2000, height: 1000 }, { ...tall, maxWidth: 2000 }).canvas).toEqual({ width: 1500, height: 750 });
    expect(planRender(3, request('90'), { width: 2000, height: 1000 }, tall).canvas).toEqual({ width: 750, height: 1500 });
    expect(() => planRender(3, request('0'), { width: 2000, height: 1000 }, tall)).toThrow(/exceeds the limit of 1000×2000/);
  });

  it('max stays servable at any angle: the largest size whose rotated canvas fits', () => {
    const result = plan('full/max/45/default.png');
    expect(result.canvas.width * result.canvas.height).toBeLessThanOrEqual(limits.maxArea);
    expect(result.width / result.height).toBeCloseTo(4 / 3, 2);
    // One pixel wider would not fit.
    expect(failure(`full/${result.width + 1},/45/default.png`)).toMatch(/^400 requested size .*, rotated to .*, exceeds the limit/);
    expect(result.canonical).toBe('full/max/45/default.png');
  });

  it('every max and ^max plan fits the limits after rotation (property)', () => {
    fc.assert(
      fc.property(
        fc.record({
          width: fc.integer({ min: 1, max: 50_000 }),
          height: fc.integer({ min: 1, max: 50_000 }),
          maxWidth: fc.integer({ min: 1, max: 20_000 }),
          maxHeight: fc.integer({ min: 1, max: 20_000 }),
          maxArea: fc.integer({ min: 1, max: 100_000_000 }),
          degrees: fc.oneof(fc.constantFrom(0, 90, 180, 270), fc.double({ min: 0, max: 359.99, noNaN: true })),
          upscale: fc.boolean(),
        }),
        ({ width, height, maxWidth, maxHeight, maxArea, degrees, upscale }) => {
          const limits = { maxWidth, maxHeight, maxArea };
          const rotation = formatDecimal(Math.round(degrees * 100) / 100);
          let result;
          try {
            result = planRender(3, parseImageRequest(3, 'full', upscale ? '^max' : 'max', rotation, 'default.png'), { width, height }, limits);
          } catch (error) {
            // Only a size that rounds to nothing may fail.
            expect((error as Error).message).toMatch(/less than one pixel/);
            return;
          }
          const { canvas } = result;
          expect(canvas.width).toBeLessThanOrEqual(maxWidth);
          expect(canvas.height).toBeLessThanOrEqual(maxHeight);
          expect(canvas.width * canvas.height).toBeLessThanOrEqual(maxArea);
          expect(planRender(3, parseImageRequest(3, ...(result.canonical.split('/') as [string, string, string, string])), { width, height }, limits)).toEqual(result);
        },
      ),
      { numRuns: 2000 },
    );
  });
});

describe('canonical form', () => {
  it.each<[string, ApiVersion, string]>([
    ['full/max/0/default.jpg', 3, 'full/max/0/default.jpg'],
    ['0,0,4000,3000/max/0/default.jpg', 3, 'full/max/0/default.jpg'],
    ['pct:0,0,50,50/pct:50/90.0/gray.png', 3, '0,0,2000,1500/1000,750/90/gray.png'],
    ['square/!256,256/!22.50/color.webp', 3, '500,0,3000,3000/256,256/!22.5/color.webp'],
    ['0,0,100,100/^200,/0/default.jpg', 3, '0,0,100,100/^200,200/0/default.jpg'],
    ['full/full/0/default.jpg', 2, 'full/full/0/default.jpg'],
    ['0,0,1024,1024/256,/0/default.jpg', 2, '0,0,1024,1024/256,/0/default.jpg'],
    ['0,0,1024,1024/256,256/0/default.jpg', 2, '0,0,1024,1024/256,/0/default.jpg'],
    ['0,0,1024,1024/256,100/0/default.jpg', 2, '0,0,1024,1024/256,100/0/default.jpg'],
  ])('%s (v%i) → %s', (path, version, canonical) => {
    expect(plan(path, version).canonical).toBe(canonical);
  });

  it('canonical requests plan to the same result', () => {
    for (const path of ['pct:10,20,30,40/!500,500/!45/bitonal.png', 'square/pct:33/180/gray.jpg', '100,100,3000,3000/^max/0/default.jpg']) {
      const first = plan(path);
      const again = plan(first.canonical);
      expect(again).toEqual(first);
    }
  });
});
