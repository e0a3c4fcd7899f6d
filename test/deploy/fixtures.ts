import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Capacity, CapacityStep } from '../../deploy/src/capacity.js';

/** One held step: only the figures a test cares about are given. */
export function step(offeredRate: number, coresUsed: number, overrides: Partial<CapacityStep> = {}): CapacityStep {
  return {
    offeredRate,
    achievedRate: offeredRate,
    p99Ms: 40,
    p99AllMs: 150,
    maxMs: 2_500,
    coldP99Ms: 900,
    errors: 0,
    non2xx: 0,
    coresUsed,
    peakRssMiB: 500,
    repeats: 3,
    ...overrides,
  };
}

/**
 * A plausible measured capacity file (numbers chosen, not measured: tests need fixed inputs).
 * Its CPU curve is not a straight line: at the request target (150 × 0.7 = 105 req/s) it reads
 * 0.7 + 0.2 × 5/50 = 0.72 cores, where a line through the R_max point would say 0.63.
 */
export function measuredCapacity(overrides: Partial<Capacity> = {}): Capacity {
  return {
    kind: 'measured',
    date: '2026-11-23T12:00:00.000Z',
    machine: '2 × Test CPU, 8 GiB',
    setup: 'test image (Node v22), docker run --cpus 1 --memory 2048m, S3 through a throttling proxy',
    container: { cpus: 1, memoryLimitMiB: 2048 },
    sloP99Ms: 200,
    headroom: 0.7,
    sustainableRequestsPerSecond: 150,
    coresAtSustainable: 0.9,
    peakRssMiBAtSustainable: 600,
    mix: 'test mix',
    steps: [step(50, 0.5), step(100, 0.7), step(150, 0.9), step(200, 1, { p99Ms: 900, failure: 'p99 900 ms above the SLO 200 ms' })],
    ...overrides,
  };
}

/** Writes a capacity file (any JSON-able value, or raw text) into a fresh folder; returns its path. */
export async function capacityFile(content: unknown): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'iiif-capacity-'));
  const path = join(dir, 'capacity.json');
  await writeFile(path, typeof content === 'string' ? content : JSON.stringify(content));
  return path;
}
