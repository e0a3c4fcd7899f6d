import { describe, expect, it } from 'vitest';
import { viewerSession } from '../../bench/viewer-session.js';

describe('viewer session', () => {
  const session = viewerSession({ width: 18_432, height: 14_000, tileSize: 256, viewport: { width: 1280, height: 800 }, tiles: 60 });

  it('asks for the home view coarsest first, then finer levels, 60 tiles in all, none twice', () => {
    expect(session).toHaveLength(60);
    expect(new Set(session).size).toBe(60);
    expect(session[0]).toBe('0,0,18432,14000/144,110/0/default.jpg');
    const factors = session.map((url) => Number(url.split('/')[0]!.split(',')[2]) / Number(url.split('/')[1]!.split(',')[0]));
    // Scale factors never grow: the session only zooms in (an edge tile's factor is off by its rounding).
    for (let i = 1; i < factors.length; i++) expect(Math.round(factors[i]!)).toBeLessThanOrEqual(Math.round(factors[i - 1]!));
    expect(Math.round(factors.at(-1)!)).toBeLessThan(16);
  });

  it('asks only for tiles inside the image, each at most the tile size', () => {
    for (const url of session) {
      const [region, size] = url.split('/');
      const [x, y, w, h] = region!.split(',').map(Number);
      const [sw, sh] = size!.split(',').map(Number);
      expect(x! + w!).toBeLessThanOrEqual(18_432);
      expect(y! + h!).toBeLessThanOrEqual(14_000);
      expect(Math.max(sw!, sh!)).toBeLessThanOrEqual(256);
    }
  });
});
