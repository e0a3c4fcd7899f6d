import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LeaseLostError } from '../../src/derivatives/errors.js';
import type { Derivatives } from '../../src/derivatives/open.js';
import { S3Store } from '../source/s3-store.js';
import { container, keysUnder, PREFIX, type ContainerOptions } from './fleet-parts.js';

let store: S3Store;
beforeAll(async () => {
  store = await S3Store.start();
});
afterAll(() => store.close());

const opened: Derivatives[] = [];
afterEach(() => {
  store.fault = undefined;
  for (const parts of opened.splice(0)) parts.client.destroy();
});

function open(owner: string, options: ContainerOptions = {}): Derivatives {
  const parts = container(store, owner, options);
  opened.push(parts);
  return parts;
}

// Each behaviour against both kinds of store: s3rver as it is (every write succeeds), and s3rver
// behind the proxy honouring If-None-Match / If-Match as AWS S3 does.
describe.each([
  ['a store that ignores conditional writes (s3rver)', false],
  ['a store that honours them (strict proxy)', true],
])('the fleet lease on %s', (_name, strict) => {
  beforeAll(() => {
    store.conditionalWrites = strict;
  });

  it('finds out once whether the store honours conditional writes, leaving nothing behind', async () => {
    const { leases } = open('probe');
    expect(await leases.conditionalWrites()).toBe(strict);
    const puts = store.requests.filter((r) => r.method === 'PUT').length;
    expect(await leases.conditionalWrites()).toBe(strict);
    expect(store.requests.filter((r) => r.method === 'PUT').length).toBe(puts);
    expect(await keysUnder(store, `${PREFIX}.conditional-write-probe`)).toEqual([]);
  });

  it('goes to exactly one of four containers racing for it, every round', async () => {
    // The production read-back delay: a racer slower than it would rightly give up, and a busy machine must not make that happen.
    const racers = ['a', 'b', 'c', 'd'].map((owner) => open(`container-${owner}`, { settleMs: 1000 }).leases);
    await Promise.all(racers.map((leases) => leases.conditionalWrites()));
    for (let round = 0; round < 4; round++) {
      const sourceKey = `race/${strict}/${round}.jpg`;
      const attempts = await Promise.all(racers.map((leases) => leases.acquire(sourceKey, 'v1')));
      const winners = attempts.filter((attempt) => attempt.lease);
      expect(winners, `round ${round}`).toHaveLength(1);
      const winner = winners[0]!.lease!.record;
      for (const attempt of attempts) if (!attempt.lease && attempt.holder) expect(attempt.holder.token).toBe(winner.token);
      expect(await racers[0]!.current(sourceKey, 'v1')).toEqual(winner);
    }
    if (strict) {
      const creates = store.requests.filter((r) => r.method === 'PUT' && r.key.startsWith(`${PREFIX}race/true/`));
      expect(creates.length).toBeGreaterThan(0);
      expect(creates.every((r) => r.ifNoneMatch === '*')).toBe(true);
    }
  });

  it('is not taken while live; an expired one is taken over, and its old holder learns it lost it', async () => {
    const b = open('container-b', { leaseSeconds: 60 }).leases;
    // Live: a lease far from its expiry, whatever the machine's speed, is refused to others.
    const live = (await open('container-a', { leaseSeconds: 60 }).leases.acquire(`live/${strict}.jpg`, 'v1')).lease!;
    expect(live.record).toMatchObject({ owner: 'container-a', phase: 'converting' });
    const refused = await b.acquire(`live/${strict}.jpg`, 'v1');
    expect(refused.lease).toBeUndefined();
    expect(refused.holder?.owner).toBe('container-a');
    await live.release();

    // Expired: a short lease, waited out, is taken over.
    const a = open('container-a', { leaseSeconds: 0.5 }).leases;
    const sourceKey = `expiry/${strict}.jpg`;
    const first = (await a.acquire(sourceKey, 'v1')).lease!;
    while ((await b.current(sourceKey, 'v1'))!.expiresAt > Date.now()) await sleep(100);
    const second = (await b.acquire(sourceKey, 'v1')).lease!;
    expect(second.record.owner).toBe('container-b');
    await expect(first.confirm()).rejects.toBeInstanceOf(LeaseLostError);
    await expect(first.renew('uploading')).rejects.toBeInstanceOf(LeaseLostError);
    // Releasing a lost lease leaves the new holder's alone.
    await first.release();
    await second.confirm();
    await second.renew('uploading');
    expect(await a.current(sourceKey, 'v1')).toMatchObject({ owner: 'container-b', phase: 'uploading' });
    await second.release();
    expect(await a.current(sourceKey, 'v1')).toBeUndefined();
  });

  it('counts a lease object that cannot be read (half-written) as expired', async () => {
    const { leases, store: derivatives } = open('container-a');
    const sourceKey = `garbled/${strict}.jpg`;
    await store.put(derivatives.keys(sourceKey, 'v1').lease, Buffer.from('{"owner":"container-x","tok'));
    const attempt = await leases.acquire(sourceKey, 'v1');
    expect(attempt.lease?.record.owner).toBe('container-a');
  });
});

// Only a store that ignores conditional writes needs the write-settle-read-back lease.
describe('the fleet lease on a store that ignores conditional writes', () => {
  it('is given up by a racer whose own write was too slow to be sure of', async () => {
    store.conditionalWrites = false;
    const { leases } = open('container-slow', { settleMs: 300 });
    await leases.conditionalWrites();
    const sourceKey = 'slow/writer.jpg';
    store.fault = (r) => (r.method === 'PUT' && r.key.endsWith('/lease') ? { delayMs: 400 } : undefined);
    const attempt = await leases.acquire(sourceKey, 'v1');
    expect(attempt.lease).toBeUndefined();
    store.fault = undefined;
    // Its claim is withdrawn rather than left for everyone to wait out.
    expect(await leases.current(sourceKey, 'v1')).toBeUndefined();
  });
});
