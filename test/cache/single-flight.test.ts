import { describe, expect, it } from 'vitest';
import { SingleFlight } from '../../src/cache/single-flight.js';

describe('SingleFlight', () => {
  it('runs the work once for concurrent callers of one key and gives them all its value', async () => {
    const flights = new SingleFlight<number>();
    let calls = 0;
    let release!: (value: number) => void;
    const work = () => {
      calls++;
      return new Promise<number>((resolve) => (release = resolve));
    };
    const waiting = Array.from({ length: 20 }, () => flights.run('a', work));
    expect(flights.size).toBe(1);
    release(42);
    expect(await Promise.all(waiting)).toEqual(Array(20).fill(42));
    expect(calls).toBe(1);
    expect(flights.size).toBe(0);
  });

  it('gives every caller the same error, keeps keys apart, and runs again once done', async () => {
    const flights = new SingleFlight<string>();
    const failure = new Error('store down');
    let calls = 0;
    const failing = () => {
      calls++;
      return Promise.reject(failure);
    };
    const results = await Promise.allSettled([flights.run('a', failing), flights.run('a', failing), flights.run('b', failing)]);
    expect(results.map((r) => (r.status === 'rejected' ? r.reason : r.value))).toEqual([failure, failure, failure]);
    expect(calls).toBe(2);
    expect(await flights.run('a', async () => 'fine')).toBe('fine');
  });
});
