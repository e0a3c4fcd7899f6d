import { describe, expect, it } from 'vitest';
import { buildInfo2, buildInfo3, tileLayout } from '../../src/iiif/info.js';
import { parseImageRequest } from '../../src/iiif/parse.js';
import { planRender } from '../../src/iiif/plan.js';

const limits = { maxWidth: 10_000, maxHeight: 10_000, maxArea: 25_000_000 };

describe('tile layout', () => {
  it('adds scale factors until the whole image fits one tile', () => {
    expect(tileLayout({ width: 12000, height: 9000 }, 256, limits).scaleFactors).toEqual([1, 2, 4, 8, 16, 32, 64]);
    expect(tileLayout({ width: 256, height: 100 }, 256, limits).scaleFactors).toEqual([1]);
    expect(tileLayout({ width: 257, height: 100 }, 256, limits).scaleFactors).toEqual([1, 2]);
  });

  it('lists sizes smallest first and only those within the limits', () => {
    const { sizes } = tileLayout({ width: 12000, height: 9000 }, 256, limits);
    expect(sizes[0]).toEqual({ width: 188, height: 141 });
    expect(sizes.at(-1)).toEqual({ width: 3000, height: 2250 });
    for (const size of sizes) expect(size.width * size.height).toBeLessThanOrEqual(limits.maxArea);
  });

  it('every advertised size and tile is servable', () => {
    const image = { width: 6400, height: 4801 };
    const layout = tileLayout(image, 256, limits);
    for (const size of layout.sizes) {
      expect(() => planRender(3, parseImageRequest(3, 'full', `${size.width},${size.height}`, '0', 'default.jpg'), image, limits)).not.toThrow();
    }
    for (const factor of layout.scaleFactors) {
      const span = 256 * factor;
      for (const [x, y] of [[0, 0], [Math.floor((image.width - 1) / span) * span, Math.floor((image.height - 1) / span) * span]] as const) {
        const w = Math.min(span, image.width - x);
        const h = Math.min(span, image.height - y);
        const size = `${Math.ceil(w / factor)},${Math.ceil(h / factor)}`;
        expect(() => planRender(3, parseImageRequest(3, `${x},${y},${w},${h}`, size, '0', 'default.jpg'), image, limits)).not.toThrow();
      }
    }
  });
});

describe('info.json', () => {
  const input = { id: 'https://example.org/iiif/3/a%2Fb', image: { width: 1000, height: 800 }, layout: tileLayout({ width: 1000, height: 800 }, 256, limits), limits };

  it('3.0 has the required properties, @context first, and only 3.0 feature names', () => {
    const info = buildInfo3(input);
    expect(Object.keys(info)[0]).toBe('@context');
    expect(info).toMatchObject({
      '@context': 'http://iiif.io/api/image/3/context.json',
      id: 'https://example.org/iiif/3/a%2Fb',
      type: 'ImageService3',
      protocol: 'http://iiif.io/api/image',
      profile: 'level2',
      width: 1000,
      height: 800,
      maxWidth: 10_000,
      tiles: [{ width: 256, height: 256, scaleFactors: [1, 2, 4] }],
    });
    expect(info.extraFeatures).toContain('sizeUpscaling');
    const features3 = ['baseUriRedirect', 'canonicalLinkHeader', 'cors', 'jsonldMediaType', 'mirroring', 'profileLinkHeader', 'regionByPct', 'regionByPx', 'regionSquare', 'rotationArbitrary', 'rotationBy90s', 'sizeByConfinedWh', 'sizeByH', 'sizeByPct', 'sizeByW', 'sizeByWh', 'sizeUpscaling'];
    for (const feature of info.extraFeatures as string[]) expect(features3).toContain(feature);
    expect(info.extraFormats).toEqual(['webp', 'gif', 'tif', 'avif']);
  });

  it('2.1 uses @id and a profile array starting with the level URI', () => {
    const info = buildInfo2(input);
    expect(Object.keys(info)[0]).toBe('@context');
    expect(info['@id']).toBe('https://example.org/iiif/3/a%2Fb');
    expect(info.id).toBeUndefined();
    const profile = info.profile as [string, { formats: string[]; supports: string[] }];
    expect(profile[0]).toBe('http://iiif.io/api/image/2/level2.json');
    expect(profile[1].supports).toContain('sizeAboveFull');
    expect(profile[1].supports).not.toContain('sizeUpscaling');
    expect(profile[1].formats).toContain('jpg');
  });
});
