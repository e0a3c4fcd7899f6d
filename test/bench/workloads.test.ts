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
    await expect(runBenchmarks(['W9'])).rejects.toThrow('unknown workload W9; choose from W1, W2, W3, W4, W5');
  });
});
