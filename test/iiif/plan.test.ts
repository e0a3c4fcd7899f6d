import { describe, expect, it } from 'vitest';
import { IiifError } from '../../src/errors.js';
import { parseImageRequest } from '../../src/iiif/parse.js';
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
