import { describe, expect, it } from 'vitest';
import { IiifError } from '../../src/errors.js';
import { Admission } from '../../src/image/admission.js';
import { Metrics } from '../../src/metrics.js';

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

const limits = { cheap: { concurrency: 2, queue: 1, retryAfterSeconds: 1 }, expensive: { concurrency: 1, queue: 0, retryAfterSeconds: 5 } };

describe('admission control', () => {
  it('runs up to the lane concurrency, queues up to the bound, and rejects beyond with 503 + Retry-After', async () => {
    const metrics = new Metrics();
    const admission = new Admission(limits, 10_000, metrics);
    const gate = deferred();
    const started: number[] = [];
    const job = (n: number) => admission.run('cheap', async () => {
      started.push(n);
      await gate.promise;
      return n;
    });
    const running = [job(1), job(2)];
    const queued = job(3);
    await expect(job(4)).rejects.toMatchObject({ statusCode: 503, headers: { 'retry-after': '1' } });
    await Promise.resolve();
    expect(started).toEqual([1, 2]);
    gate.resolve();
    expect(await Promise.all([...running, queued])).toEqual([1, 2, 3]);
    expect(started).toEqual([1, 2, 3]);
    expect(await metrics.registry.getSingleMetricAsString('iiif_admission_rejections_total')).toContain('{lane="cheap",reason="queue-full"} 1');
  });

  it('a saturated expensive lane does not block the cheap lane', async () => {
    const admission = new Admission(limits, 10_000, new Metrics());
    const gate = deferred();
    const big = admission.run('expensive', () => gate.promise);
    const error = await admission.run('expensive', async () => 'never').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IiifError);
    expect((error as IiifError).headers['retry-after']).toBe('5');
    expect(await admission.run('cheap', async () => 'tile')).toBe('tile');
    gate.resolve();
    await big;
  });

  it('a request that waits longer than the deadline is answered 503', async () => {
    const admission = new Admission({ cheap: { concurrency: 1, queue: 5, retryAfterSeconds: 1 }, expensive: limits.expensive }, 20, new Metrics());
    const gate = deferred();
    const first = admission.run('cheap', () => gate.promise);
    await expect(admission.run('cheap', async () => 'late')).rejects.toMatchObject({ statusCode: 503, message: expect.stringMatching(/waited too long/) });
    gate.resolve();
    await first;
    // The slot was released: work runs again.
    expect(await admission.run('cheap', async () => 'ok')).toBe('ok');
  });

  it('releases the slot when the work fails', async () => {
    const admission = new Admission({ cheap: { concurrency: 1, queue: 0, retryAfterSeconds: 1 }, expensive: limits.expensive }, 1000, new Metrics());
    await expect(admission.run('cheap', async () => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    expect(await admission.run('cheap', async () => 'after')).toBe('after');
  });
});
