import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Counter } from 'prom-client';
import type { Metrics } from '../metrics.js';
import { LeaseLostError } from './errors.js';
import type { Lease, LeaseRecord, Leases } from './lease.js';
import type { Derivative, DerivativeFiles, DerivativeStore } from './store.js';

export interface WaitProgress {
  /** Since obtain() began. */
  waitedMs: number;
  /** The lease as last seen: who converts and in which phase; undefined when none was visible. */
  holder: LeaseRecord | undefined;
}

export interface ObtainOptions {
  /** Longest wait for another container's conversion; defaults to the fleet's (IIIF_DERIVATIVE_WAIT_MS). */
  waitMs?: number;
  /** Called before each pause while another container converts. */
  onProgress?: (progress: WaitProgress) => void;
}

export type Obtained =
  /** In the store; `built` when this container converted and published it just now. */
  | { derivative: Derivative; built: boolean }
  /** Another container was still converting when the wait ran out: serve this request from the source. */
  | { derivative: undefined; holder: LeaseRecord | undefined };

export interface FleetOptions {
  waitMs: number;
  /** The first pause between looks while waiting; it doubles up to `maxPollMs`. */
  firstPollMs: number;
  maxPollMs: number;
}

/** Results of obtain(), the values of iiif_derivative_obtained_total's label. */
const RESULTS = ['found', 'built', 'timeout'] as const;

/**
 * One conversion per source version across the fleet. obtain() returns the stored derivative
 * when there is one; otherwise it takes the version's lease and converts (with the caller's
 * `build`), or, when another container holds the lease, waits for that container's derivative,
 * looking again with growing pauses, for a bounded time. A lease that expires while waiting
 * (its converter crashed) is taken over. Failures of the store are thrown as
 * DerivativeStoreError, so the caller can serve from the source or a local pyramid instead.
 */
export class FleetConversions {
  private readonly obtained: Counter<'result'>;

  constructor(
    private readonly store: DerivativeStore,
    private readonly leases: Leases,
    private readonly options: FleetOptions,
    metrics: Metrics,
  ) {
    this.obtained = metrics.counter('iiif_derivative_obtained_total', 'Derivatives asked of the shared store, by outcome: found, built here, or given up waiting.', ['result']);
    for (const result of RESULTS) this.obtained.inc({ result }, 0);
  }

  async obtain(sourceKey: string, etag: string, build: () => Promise<DerivativeFiles>, options: ObtainOptions = {}): Promise<Obtained> {
    const started = performance.now();
    const deadline = started + (options.waitMs ?? this.options.waitMs);
    let pause = this.options.firstPollMs;
    for (;;) {
      const found = await this.store.find(sourceKey, etag);
      if (found) return this.count('found', { derivative: found, built: false });
      const attempt = await this.leases.acquire(sourceKey, etag);
      let holder = attempt.holder;
      if (attempt.lease) {
        try {
          const result = await this.convert(sourceKey, etag, attempt.lease, build);
          return this.count(result.built ? 'built' : 'found', result);
        } catch (error) {
          // Someone took the lease over (ours expired): theirs is the derivative to wait for.
          if (!(error instanceof LeaseLostError)) throw error;
          holder = undefined;
        }
      }
      const left = deadline - performance.now();
      if (left <= 0) return this.count('timeout', { derivative: undefined, holder });
      options.onProgress?.({ waitedMs: performance.now() - started, holder });
      await sleep(Math.min(pause, left));
      pause = Math.min(pause * 2, this.options.maxPollMs);
    }
  }

  private async convert(sourceKey: string, etag: string, lease: Lease, build: () => Promise<DerivativeFiles>): Promise<Obtained & { derivative: Derivative }> {
    try {
      // Another container may have published and released between our look and our lease.
      const found = await this.store.find(sourceKey, etag);
      if (found) return { derivative: found, built: false };
      const files = await build();
      await lease.renew('uploading');
      return { derivative: await this.store.upload(sourceKey, etag, files, () => lease.confirm()), built: true };
    } finally {
      // A lease we fail to release expires on its own; the outcome above is what the caller needs.
      await lease.release().catch(() => undefined);
    }
  }

  private count<T extends Obtained>(result: (typeof RESULTS)[number], value: T): T {
    this.obtained.inc({ result });
    return value;
  }
}
