import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Capacity } from '../../deploy/src/capacity.js';

/** A plausible measured capacity file (numbers chosen, not measured: tests need fixed inputs). */
export function measuredCapacity(overrides: Partial<Capacity> = {}): Capacity {
  return {
    kind: 'measured',
    date: '2026-11-23T12:00:00.000Z',
    machine: '2 × Test CPU, 8 GiB, Node v20.20.2',
    container: { cpus: 1, memoryLimitMiB: 2048 },
    sloP99Ms: 200,
    headroom: 0.7,
    sustainableRequestsPerSecond: 150,
    coresAtSustainable: 0.9,
    peakRssMiBAtSustainable: 600,
    mix: 'test mix',
    steps: [],
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
