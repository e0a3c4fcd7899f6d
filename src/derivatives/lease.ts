import { randomUUID } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { PRECONDITION_FAILED, type Bucket, type PutCondition } from './bucket.js';
import { DerivativeStoreError, LeaseLostError } from './errors.js';
import { versionKeys } from './keys.js';

/** The content of a lease object. */
export interface LeaseRecord {
  /** Which container holds it (logs, waiters' progress). */
  owner: string;
  /** New for every acquisition: one container's two attempts must not pass for each other. */
  token: string;
  /** Milliseconds since the epoch, by the writer's clock (containers keep NTP time). */
  expiresAt: number;
  /** What the holder is doing ("converting", "uploading"), for waiters' progress. */
  phase: string;
}

export interface LeaseOptions {
  /** This container's name in the leases it writes. */
  owner: string;
  leaseSeconds: number;
  /**
   * Only for stores that ignore conditional writes (or for taking over an expired lease): how
   * long to wait after writing a lease before reading it back. A racer whose read-then-write
   * took less than this has written by then, so the read-back shows the single winner; an
   * attempt that itself took longer gives up its claim.
   */
  settleMs: number;
}

/** A lease taken, or who holds it (undefined: nobody we could see; try again shortly). */
export type Attempt = { lease: Lease; holder?: undefined } | { lease: undefined; holder: LeaseRecord | undefined };

interface Held {
  record: LeaseRecord;
  etag: string;
}

/**
 * At most one conversion per source version across the fleet: before converting, a container
 * takes the version's lease, an object beside the derivative.
 *
 * On a store that honours `If-None-Match: *` (AWS S3 since 2024, MinIO) the lease is created
 * with it and a 412 means someone else has it. Whether the store honours it is found out once,
 * with a scratch object. On a store that ignores it (s3rver, older S3-compatible stores) every
 * write succeeds, so the writer waits `settleMs` and reads the lease back: only the last writer
 * sees its own token. Either way the holder confirms the lease is still its own before
 * uploading and again before publishing, so a holder whose lease expired and was taken over
 * publishes nothing. Expired leases (a converter that crashed) are taken over, with `If-Match`
 * on the expired version where the store honours it, and always read back.
 */
export class Leases {
  private conditional: Promise<boolean> | undefined;

  constructor(
    private readonly bucket: Bucket,
    private readonly prefix: string,
    private readonly options: LeaseOptions,
  ) {}

  get owner(): string {
    return this.options.owner;
  }

  /** Whether the store refuses `If-None-Match: *` over an existing key; asked once per process. */
  conditionalWrites(): Promise<boolean> {
    this.conditional ??= this.probe().catch((error: unknown) => {
      this.conditional = undefined;
      throw error;
    });
    return this.conditional;
  }

  /** The lease of a source version as it is now; undefined when nobody holds one. */
  async current(sourceKey: string, etag: string): Promise<LeaseRecord | undefined> {
    return (await readLease(this.bucket, this.keyFor(sourceKey, etag)))?.record;
  }

  /** Takes the lease of a source version unless another container holds a live one. */
  async acquire(sourceKey: string, etag: string): Promise<Attempt> {
    const strict = await this.conditionalWrites();
    const key = this.keyFor(sourceKey, etag);
    const started = performance.now();
    const current = await readLease(this.bucket, key);
    if (current && current.record.expiresAt > Date.now()) return { lease: undefined, holder: current.record };
    const record: LeaseRecord = { owner: this.options.owner, token: randomUUID(), expiresAt: this.expiry(), phase: 'converting' };
    const condition: PutCondition | undefined = strict ? (current ? { ifMatch: current.etag } : { ifNoneMatch: '*' }) : undefined;
    const written = await this.bucket.put(key, encode(record), { condition, contentType: 'application/json' });
    if (written === PRECONDITION_FAILED) return { lease: undefined, holder: (await readLease(this.bucket, key))?.record };
    const lease = new Lease(this.bucket, key, { record, etag: written }, strict, () => this.expiry());
    // A create the store checked is ours alone; anything else may have raced writers it did not stop.
    if (strict && !current) return { lease };
    if (performance.now() - started >= this.options.settleMs) {
      // Too slow to be sure every racer wrote before our read-back: give the claim up.
      await lease.release();
      return { lease: undefined, holder: undefined };
    }
    await sleep(this.options.settleMs);
    const after = await readLease(this.bucket, key);
    return after?.record.token === record.token ? { lease } : { lease: undefined, holder: after?.record };
  }

  private keyFor(sourceKey: string, etag: string): string {
    return versionKeys(this.prefix, sourceKey, etag).lease;
  }

  private expiry(): number {
    return Date.now() + this.options.leaseSeconds * 1000;
  }

  private async probe(): Promise<boolean> {
    const key = `${this.prefix}.conditional-write-probe-${randomUUID()}`;
    const body = Buffer.from(this.options.owner);
    await this.bucket.put(key, body);
    try {
      const again = await this.bucket.put(key, body, { condition: { ifNoneMatch: '*' } });
      return again === PRECONDITION_FAILED;
    } catch (error) {
      // A store that rejects the header outright (400, 501) cannot do conditional writes either.
      if (error instanceof DerivativeStoreError) return false;
      throw error;
    } finally {
      // A leftover scratch object costs a few bytes; failing every lease over it would cost the fleet.
      await this.bucket.delete([key]).catch(() => undefined);
    }
  }
}

/** A lease this container holds. */
export class Lease {
  constructor(
    private readonly bucket: Bucket,
    readonly key: string,
    private held: Held,
    private readonly strict: boolean,
    private readonly expiry: () => number,
  ) {}

  get record(): LeaseRecord {
    return this.held.record;
  }

  /**
   * Throws LeaseLostError unless the lease object still carries our token. An expired lease
   * nobody took over is still ours: expiry only allows others to take it.
   */
  async confirm(): Promise<void> {
    const now = await readLease(this.bucket, this.key);
    if (now?.record.token !== this.held.record.token) {
      throw new LeaseLostError(now ? `the lease was taken over by ${now.record.owner}` : 'the lease was removed');
    }
  }

  /** Extends the lease and records the phase (what waiters see as progress); throws LeaseLostError when it is no longer ours. */
  async renew(phase: string): Promise<void> {
    const record: LeaseRecord = { ...this.held.record, phase, expiresAt: this.expiry() };
    // Without If-Match a read just before the write is the best check there is.
    if (!this.strict) await this.confirm();
    const condition: PutCondition | undefined = this.strict ? { ifMatch: this.held.etag } : undefined;
    const written = await this.bucket.put(this.key, encode(record), { condition, contentType: 'application/json' });
    if (written === PRECONDITION_FAILED) throw new LeaseLostError('the lease was taken over');
    this.held = { record, etag: written };
  }

  /** Gives the lease up (when it is still ours), so nobody waits for its expiry. */
  async release(): Promise<void> {
    const now = await readLease(this.bucket, this.key);
    if (now?.record.token === this.held.record.token) await this.bucket.delete([this.key]);
  }
}

const encode = (record: LeaseRecord): Buffer => Buffer.from(JSON.stringify(record));

/** A lease object as stored; one that cannot be parsed (half-written on a store without atomic writes) counts as expired. */
async function readLease(bucket: Bucket, key: string): Promise<Held | undefined> {
  const object = await bucket.getText(key);
  if (!object) return undefined;
  return { record: parseRecord(object.text), etag: object.etag };
}

function parseRecord(text: string): LeaseRecord {
  try {
    const value = JSON.parse(text) as Partial<LeaseRecord>;
    if (typeof value.owner === 'string' && typeof value.token === 'string' && typeof value.expiresAt === 'number' && typeof value.phase === 'string') {
      return { owner: value.owner, token: value.token, expiresAt: value.expiresAt, phase: value.phase };
    }
  } catch {
    // Falls through to the expired placeholder below.
  }
  return { owner: 'unknown', token: '', expiresAt: 0, phase: 'unreadable' };
}
