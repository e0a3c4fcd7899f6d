import { describe, expect, it } from 'vitest';
import { capacityMix, coldOpen, combineRuns, isCold, mixStream, rateSearch, stepFailure, storedKey, warmIdentifiers } from '../../bench/capacity.js';
import { BENCH_HEIGHT, BENCH_WIDTH, PLAIN_JPEGS, PYRAMIDS } from '../../bench/images.js';
import { step } from '../deploy/fixtures.js';

const images = { pyramids: PYRAMIDS, flats: PLAIN_JPEGS, size: { width: BENCH_WIDTH, height: BENCH_HEIGHT } };

describe('capacity mix', () => {
  it('is 17 tiles, 2 info.json and 1 thumbnail in every 20 warm requests, every tile once', () => {
    const paths = capacityMix(images);
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

  it('opens a cold image as a viewer does: info.json, then the level that fits the screen', () => {
    const paths = coldOpen('cold-7-pyramid-a.tif', { width: 12_000, height: 9_000 });
    expect(paths[0]).toBe('/iiif/3/cold-7-pyramid-a.tif/info.json');
    // 12000 / 16 = 750 px wide: 3 × 3 tiles of 4096 full-resolution pixels.
    expect(paths.slice(1)).toHaveLength(9);
    expect(paths[1]).toBe('/iiif/3/cold-7-pyramid-a.tif/0,0,4096,4096/256,256/0/default.jpg');
    expect(paths.every(isCold)).toBe(true);
    expect(storedKey('cold-7-pyramid-a.tif')).toBe('pyramid-a.tif');
  });

  it('makes the warm set of copies under identifiers of their own, so its tiles outnumber the result cache', () => {
    const warm = warmIdentifiers(PYRAMIDS, 8);
    expect(warm).toHaveLength(24);
    expect(warm.slice(0, 4)).toEqual(['warm-0-pyramid-a.tif', 'warm-0-pyramid-b.tif', 'warm-0-pyramid-c.tif', 'warm-1-pyramid-a.tif']);
    expect(new Set(warm.map(storedKey))).toEqual(new Set(PYRAMIDS));
    // 24 × 2,276 tiles of ~15 KB each: several times the 128 MiB result cache.
    expect(capacityMix({ pyramids: warm, size: images.size }).filter((p) => p.includes('/default.jpg') && !p.includes('/full/')).length).toBeGreaterThan(50_000);
  });

  it('splices a never-seen image into the warm stream every coldEvery requests, every flatEvery-th a single-level JPEG', () => {
    const next = mixStream(images, { coldEvery: 100, flatEvery: 3, warmCopies: 2 });
    // The 10th cold open starts at request 1000 and takes 10 requests.
    const stream = Array.from({ length: 1009 }, next);
    const opened = [...new Set(stream.filter(isCold).map((p) => p.split('/')[3]!))];
    expect(opened).toEqual([
      'cold-0-plain-a.jpg', 'cold-1-pyramid-b.tif', 'cold-2-pyramid-c.tif', 'cold-3-plain-a.jpg', 'cold-4-pyramid-b.tif',
      'cold-5-pyramid-c.tif', 'cold-6-plain-a.jpg', 'cold-7-pyramid-b.tif', 'cold-8-pyramid-c.tif', 'cold-9-plain-a.jpg',
    ]);
    expect(stream[99]).toBe('/iiif/3/cold-0-plain-a.jpg/info.json');
    expect(stream.filter(isCold)).toHaveLength(10 * 10);
    expect(stream.filter((p) => !isCold(p))).toEqual(capacityMix({ pyramids: warmIdentifiers(PYRAMIDS, 2), size: images.size }).slice(0, 909));
  });
});

describe('capacity step judgement', () => {
  const good = { ...step(100, 0.8), achievedRate: 99.5, p99Ms: 120 };
  const limits = { sloP99Ms: 200, memoryLimitMiB: 2048 };

  it('holds within the SLO, without errors, at the offered rate, within memory', () => {
    expect(stepFailure(good, limits)).toBeUndefined();
  });

  it('judges the SLO on warm requests only: cold opens wait for S3 whatever the load', () => {
    expect(stepFailure({ ...good, p99AllMs: 1500, coldP99Ms: 1800 }, limits)).toBeUndefined();
  });

  it('fails on p99 above the SLO, errors, 503s, a generator that fell behind, or memory over the limit', () => {
    expect(stepFailure({ ...good, p99Ms: 201 }, limits)).toMatch(/p99 201 ms above the SLO 200 ms/);
    expect(stepFailure({ ...good, errors: 1 }, limits)).toMatch(/connection errors/);
    expect(stepFailure({ ...good, non2xx: 3 }, limits)).toMatch(/3 non-2xx/);
    expect(stepFailure({ ...good, achievedRate: 80 }, limits)).toMatch(/sent only 80 req\/s of 100/);
    expect(stepFailure({ ...good, peakRssMiB: 2100 }, limits)).toMatch(/OOM/);
  });

  it('takes the median of repeated runs, but the largest peak memory and slowest request', () => {
    const runs = [
      { ...step(100, 0.7), p99Ms: 90, peakRssMiB: 400, maxMs: 900 },
      { ...step(100, 0.9), p99Ms: 300, peakRssMiB: 450, maxMs: 5000 },
      { ...step(100, 0.8), p99Ms: 100, peakRssMiB: 420, maxMs: 800 },
    ];
    expect(combineRuns(runs)).toMatchObject({ offeredRate: 100, p99Ms: 100, coresUsed: 0.8, peakRssMiB: 450, maxMs: 5000, repeats: 3 });
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
