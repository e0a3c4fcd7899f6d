import { describe, expect, it } from 'vitest';
import { shuffled, tilePaths } from '../../bench/workloads.js';
import { runBenchmarks, workloads } from '../../bench/run.js';

describe('benchmark workloads', () => {
  it('enumerate every tile of every level like a 256-px deep-zoom viewer', () => {
    const paths = tilePaths({ width: 1000, height: 600 }, 256, 3);
    // Level 1: 4×3 tiles; level 2: 2×2; level 4: 1×1 (1000/4 = 250 fits one tile).
    expect(paths).toHaveLength(12 + 4 + 1);
    expect(paths[0]).toBe('0,0,256,256/256,256/0/default.jpg');
    expect(paths).toContain('768,512,232,88/232,88/0/default.jpg');
    expect(paths).toContain('512,512,488,88/244,44/0/default.jpg');
    expect(paths.at(-1)).toBe('0,0,1000,600/250,150/0/default.jpg');
    expect(tilePaths({ width: 1000, height: 600 }, 256, 2)[0]).toBe('0,0,256,256/256,/0/default.jpg');
  });

  it('W1 has at least 5,000 distinct tile URLs, shuffled deterministically', () => {
    const w1 = workloads().find((w) => w.name === 'W1')!;
    expect(new Set(w1.paths).size).toBe(w1.paths.length);
    expect(w1.paths.length).toBeGreaterThanOrEqual(5000);
    expect(shuffled([1, 2, 3, 4, 5])).toEqual(shuffled([1, 2, 3, 4, 5]));
    expect(shuffled([1, 2, 3, 4, 5])).not.toEqual([1, 2, 3, 4, 5]);
  });
});

describe('npm run bench', () => {
  it('refuses an unknown workload before starting anything', async () => {
    await expect(runBenchmarks(['W99'])).rejects.toThrow('unknown workload W99; choose from W1, W2, W3, W4, W5, W6, W7, W8, W9');
  });
});

describe('workloads on pyramids this project did not make', () => {
  it('W6–W9 ask for each tile of the foreign pyramids once', () => {
    const all = workloads();
    for (const name of ['W6', 'W7', 'W8', 'W9']) {
      const workload = all.find((w) => w.name === name)!;
      expect(new Set(workload.paths).size, name).toBe(workload.paths.length);
      expect(workload.stop).toEqual({ amount: workload.paths.length });
      expect(workload.paths.every((path) => /^\/iiif\/3\/(vips814-(rgb|default)|magick)-[abc]\.tif\//.test(path)), name).toBe(true);
    }
    // W9: a 300-px viewer's tiles.
    expect(all.find((w) => w.name === 'W9')!.paths).toContain('/iiif/3/vips814-rgb-a.tif/300,300,300,300/300,300/0/default.jpg');
  });
});
