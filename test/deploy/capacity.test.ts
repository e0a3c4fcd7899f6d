import { describe, expect, it } from 'vitest';
import { DeployInputError, readCapacity } from '../../deploy/src/capacity.js';
import { drain } from '../../deploy/src/settings.js';
import { deriveSizing } from '../../deploy/src/sizing.js';
import { capacityFile, measuredCapacity } from './fixtures.js';

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
  it('derives the thresholds: R_max × 60 × headroom, CPU at R_max × headroom, memory from peak RSS', () => {
    const sizing = deriveSizing(measuredCapacity());
    expect(sizing.requestsPerTargetPerMinute).toBe(Math.floor(150 * 60 * 0.7));
    expect(sizing.cpuTargetPercent).toBe(63);
    expect(sizing.cpuUnits).toBe(1024);
    expect(sizing.memoryReservationMiB).toBe(750);
    expect(sizing.memoryMiB).toBe(2048);
    expect(sizing.stopTimeoutSeconds).toBeGreaterThanOrEqual((drain.delay.ms + drain.timeout.ms) / 1000);
    expect(sizing.deregistrationDelaySeconds).toBe(drain.delay.ms / 1000);
  });

  it('refuses a memory reservation at or above the hard limit', () => {
    expect(() => deriveSizing(measuredCapacity({ peakRssMiBAtSustainable: 1900 }))).toThrow(/memoryReservation 2375 MiB .* is not below the hard limit 2048 MiB/);
  });

  it('refuses a request-count target that rounds to zero', () => {
    expect(() => deriveSizing(measuredCapacity({ sustainableRequestsPerSecond: 0.01, headroom: 0.5 }))).toThrow(/request-count target is 0/);
  });
});
