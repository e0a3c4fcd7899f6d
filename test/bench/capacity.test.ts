import { describe, expect, it } from 'vitest';
import { capacityMix, measureCapacity, rateSearch, stepFailure } from '../../bench/capacity.js';
import { BENCH_HEIGHT, BENCH_WIDTH, PYRAMIDS } from '../../bench/images.js';
import { parseCapacity } from '../../deploy/src/capacity.js';
import { deriveSizing } from '../../deploy/src/sizing.js';
import { makeFixtures } from '../fixtures.js';

describe('capacity mix', () => {
  it('is 17 tiles, 2 info.json and 1 thumbnail in every 20 requests, every tile once', () => {
    const paths = capacityMix({ names: PYRAMIDS, size: { width: BENCH_WIDTH, height: BENCH_HEIGHT } });
    const window = paths.slice(0, 20);
    expect(window.filter((p) => p.endsWith('/info.json'))).toHaveLength(2);
    expect(window.filter((p) => p.includes('/full/!'))).toHaveLength(1);
    const tiles = paths.filter((p) => !p.endsWith('/info.json') && !p.includes('/full/!'));
    expect(new Set(tiles).size).toBe(tiles.length);
    expect(tiles.length).toBeGreaterThan(5000);
    // Every zoom level: from full-resolution 256-px regions to the whole image in one tile.
    expect(tiles.some((p) => /\/\d+,\d+,256,256\/256,256\//.test(p))).toBe(true);
    expect(tiles.some((p) => p.includes('/0,0,12000,9000/'))).toBe(true);
  });
});

describe('capacity step judgement', () => {
  const good = { offeredRate: 100, achievedRate: 99.5, p99Ms: 120, errors: 0, non2xx: 0, coresUsed: 0.8, peakRssMiB: 500 };
  const limits = { sloP99Ms: 200, memoryLimitMiB: 2048 };

  it('holds within the SLO, without errors, at the offered rate, within memory', () => {
    expect(stepFailure(good, limits)).toBeUndefined();
  });

  it('fails on p99 above the SLO, errors, 503s, falling behind, or memory over the limit', () => {
    expect(stepFailure({ ...good, p99Ms: 201 }, limits)).toMatch(/p99 201 ms above the SLO 200 ms/);
    expect(stepFailure({ ...good, errors: 1 }, limits)).toMatch(/connection errors/);
    expect(stepFailure({ ...good, non2xx: 3 }, limits)).toMatch(/3 non-2xx/);
    expect(stepFailure({ ...good, achievedRate: 80 }, limits)).toMatch(/achieved 80 req\/s of 100/);
    expect(stepFailure({ ...good, peakRssMiB: 2100 }, limits)).toMatch(/OOM/);
  });
});

describe('rate search', () => {
  /** Runs the search against a server that holds up to `capacity` req/s; returns the rates tried. */
  function tried(capacity: number, options = { startRate: 10, factor: 1.5, maxRate: 5000, refineSteps: 2 }) {
    const search = rateSearch(options);
    const rates: number[] = [];
    for (let rate: number | undefined = search.first; rate !== undefined; rate = search.next(rate, rate <= capacity)) rates.push(rate);
    return { rates, sustainable: search.sustainable };
  }

  it('grows geometrically until a step fails, then bisects toward the limit', () => {
    const { rates, sustainable } = tried(40);
    expect(rates).toEqual([10, 15, 23, 35, 53, 44, 40]);
    expect(sustainable).toBe(40);
  });

  it('stops at the maximum rate when nothing fails', () => {
    expect(tried(1e9, { startRate: 10, factor: 2, maxRate: 50, refineSteps: 2 })).toEqual({ rates: [10, 20, 40], sustainable: 40 });
  });

  it('finds nothing when the first step fails', () => {
    expect(tried(5)).toEqual({ rates: [10], sustainable: 0 });
  });
});

describe('capacity run', () => {
  it('measures a real server process pinned to one core, step by step, into what deploy:render reads', async () => {
    const { root } = await makeFixtures();
    const options = { cpus: 1, memoryLimitMiB: 2048, sloP99Ms: 2000, headroom: 0.7, startRate: 10, factor: 2, maxRate: 20, refineSteps: 0, holdSeconds: 2, smoke: false, out: '' };
    const images = { dataDir: root, names: ['pyramid.tif'], size: { width: 2048, height: 1536 } };
    const capacity = await measureCapacity(options, images, 'load generator in the test', () => undefined);
    expect(capacity.steps.map((step) => step.offeredRate)).toEqual([10, 20]);
    for (const step of capacity.steps) {
      expect(step.failure).toBeUndefined();
      expect(step.achievedRate).toBeGreaterThan(0);
      expect(step.coresUsed).toBeGreaterThan(0);
      expect(step.peakRssMiB).toBeGreaterThan(20);
    }
    expect(capacity.sustainableRequestsPerSecond).toBe(20);
    expect(capacity.machine).toContain('server pinned to 1 core(s)');
    const parsed = parseCapacity(JSON.parse(JSON.stringify(capacity)), 'the run');
    expect(deriveSizing(parsed).requestsPerTargetPerMinute).toBe(Math.floor(20 * 60 * 0.7));
  });
});
