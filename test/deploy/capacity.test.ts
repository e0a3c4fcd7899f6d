import { describe, expect, it } from 'vitest';
import { DeployInputError, readCapacity } from '../../deploy/src/capacity.js';
import { coresAt, deriveSizing, hostSizing } from '../../deploy/src/sizing.js';
import { stopTimings } from '../../deploy/src/timings.js';
import { capacityFile, measuredCapacity, step } from './fixtures.js';

describe('capacity.json', () => {
  it('reads a measured file', async () => {
    const capacity = await readCapacity(await capacityFile(measuredCapacity()));
    expect(capacity.sustainableRequestsPerSecond).toBe(150);
    expect(capacity.container).toEqual({ cpus: 1, memoryLimitMiB: 2048 });
  });

  it('refuses a missing file, saying how to make one', async () => {
    await expect(readCapacity('/nonexistent/capacity.json')).rejects.toThrow(/capacity.json is missing: run `npm run capacity`/);
  });

  it('refuses malformed JSON', async () => {
    await expect(readCapacity(await capacityFile('{"kind": "measured",'))).rejects.toThrow(/is not valid JSON/);
  });

  it('refuses a smoke run: it proves the harness, not the capacity', async () => {
    await expect(readCapacity(await capacityFile(measuredCapacity({ kind: 'smoke' })))).rejects.toThrow(/kind is "smoke"/);
  });

  it('refuses steps without the figures the deployment reads, or without the step at R_max', async () => {
    const bad = measuredCapacity({ steps: [{ ...step(100, 0.7), coresUsed: undefined as unknown as number }] });
    const message = ((await readCapacity(await capacityFile(bad)).catch((e: unknown) => e)) as Error).message;
    expect(message).toContain('steps[0].coresUsed must be a number ≥ 0');
    expect(message).toContain('steps must hold the step at sustainableRequestsPerSecond (150)');
  });

  it('names every bad field in one message', async () => {
    const bad = { ...measuredCapacity(), headroom: 1.5, sustainableRequestsPerSecond: 0, container: { cpus: 0.5 } };
    const error = await readCapacity(await capacityFile(bad)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DeployInputError);
    const message = (error as Error).message;
    expect(message).not.toContain('\n');
    for (const field of ['headroom', 'sustainableRequestsPerSecond', 'container.cpus', 'container.memoryLimitMiB']) expect(message).toContain(field);
  });
});

describe('sizing from capacity', () => {
  it('derives the thresholds: R_max × 60 × headroom, CPU from the measured curve at that rate, memory from peak RSS', () => {
    const sizing = deriveSizing(measuredCapacity());
    expect(sizing.requestsPerTargetPerMinute).toBe(Math.floor(150 * 60 * 0.7));
    // 105 req/s lies between the held steps at 100 (0.7 cores) and 150 (0.9 cores).
    expect(sizing.cpuTargetPercent).toBe(72);
    expect(sizing.cpuUnits).toBe(1024);
    expect(sizing.memoryReservationMiB).toBe(750);
    expect(sizing.memoryMiB).toBe(2048);
    expect(sizing.latencyAlarmSeconds).toBe(0.4);
    expect(sizing.timings).toEqual(stopTimings());
  });

  it('reads the CPU curve piecewise, from an idle container through the held steps only', () => {
    const capacity = measuredCapacity();
    expect(coresAt(capacity, 0)).toBe(0);
    expect(coresAt(capacity, 25)).toBeCloseTo(0.25);
    expect(coresAt(capacity, 150)).toBeCloseTo(0.9);
    // The failed step at 200 req/s is not part of the curve.
    expect(() => coresAt(capacity, 175)).toThrow(/CPU curve ends at 150 req\/s/);
  });

  it('fits hosts by CPU units and memory reservation, and sizes their root volume for every cache', () => {
    expect(hostSizing({ vcpus: 8, memoryGiB: 16 }, 1024, 750)).toEqual({ tasksPerHost: 8, volumeGiB: 30 + 8 * 9 });
    expect(hostSizing({ vcpus: 8, memoryGiB: 4 }, 1024, 750)).toEqual({ tasksPerHost: 4, volumeGiB: 30 + 4 * 9 });
    expect(hostSizing({ vcpus: 1, memoryGiB: 4 }, 2048, 750).tasksPerHost).toBe(0);
  });

  it('refuses a memory reservation at or above the hard limit', () => {
    expect(() => deriveSizing(measuredCapacity({ peakRssMiBAtSustainable: 1900 }))).toThrow(/memoryReservation 2375 MiB .* is not below the hard limit 2048 MiB/);
  });

  it('refuses a request-count target that rounds to zero', () => {
    const capacity = measuredCapacity({ sustainableRequestsPerSecond: 0.01, headroom: 0.5, steps: [step(0.01, 0.01)] });
    expect(() => deriveSizing(capacity)).toThrow(/request-count target is 0/);
  });

  it('refuses a measurement whose slowest request outlasts the deregistration delay and the drain', () => {
    const capacity = measuredCapacity({ steps: [step(100, 0.7), step(150, 0.9, { maxMs: 75_000 })] });
    expect(() => deriveSizing(capacity)).toThrow(/a request took 75000 ms at R_max, longer than the 60 s/);
  });
});
