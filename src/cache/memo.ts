import { LRUCache } from 'lru-cache';
import { ServerError } from '../errors.js';
import { SingleFlight } from './single-flight.js';

export interface MemoOptions<V> {
  /** Most entries kept (lru-cache preallocates for it: keep it realistic, or bound by size alone). */
  max?: number;
  /** Bound on the summed size of kept values, measured by `sizeOf`. */
  maxSize?: number;
  sizeOf?: (value: V, key: string) => number;
  /** Values for which this is false are returned but not kept (too large to be worth it). */
  keep?: (value: V) => boolean;
  /** How long a kept value is served before the work runs again; unset: until evicted. */
  ttlMs?: number;
}

export type MemoOutcome = 'hit' | 'miss' | 'shared';

/**
 * A bounded memo of asynchronous work: the first caller of a key starts the work, callers that
 * arrive while it runs share its promise (single flight), and a success is kept (least recently
 * used goes first) while a failure is forgotten, so the next caller tries again.
 */
export class Memo<V> {
  private readonly done: LRUCache<string, { value: V }>;
  private readonly flights = new SingleFlight<V>();

  constructor(private readonly options: MemoOptions<V>) {
    const { sizeOf } = options;
    const ttl = options.ttlMs ? { ttl: options.ttlMs } : {};
    if (options.maxSize !== undefined && sizeOf) {
      const bySize = { maxSize: Math.max(1, options.maxSize), sizeCalculation: (entry: { value: V }, key: string) => Math.max(1, sizeOf(entry.value, key)), ...ttl };
      this.done = new LRUCache(options.max === undefined ? bySize : { ...bySize, max: options.max });
    } else if (options.max !== undefined) {
      this.done = new LRUCache({ max: options.max, ...ttl });
    } else {
      throw new ServerError('MEMO_UNBOUNDED', 'a memo needs a bound: max, or maxSize with sizeOf');
    }
  }

  /** The value for `key`, from memory, from work already running, or from `work` started now. */
  async get(key: string, work: () => Promise<V>): Promise<V> {
    return (await this.lookup(key, work)).value;
  }

  /** Like get, also saying where the value came from (for metrics and debug headers). */
  async lookup(key: string, work: () => Promise<V>): Promise<{ value: V; outcome: MemoOutcome }> {
    const kept = this.done.get(key);
    if (kept) return { value: kept.value, outcome: 'hit' };
    const outcome = this.flights.has(key) ? 'shared' : 'miss';
    const value = await this.flights.run(key, async () => {
      const value = await work();
      if (this.options.keep?.(value) ?? true) this.done.set(key, { value });
      return value;
    });
    return { value, outcome };
  }

  /** Forgets every kept value whose key starts with `prefix`; returns how many. */
  forgetPrefix(prefix: string): number {
    let dropped = 0;
    for (const key of [...this.done.keys()]) {
      if (key.startsWith(prefix)) {
        this.done.delete(key);
        dropped++;
      }
    }
    return dropped;
  }

  /** Summed size of the kept values (as measured by `sizeOf`). */
  get keptSize(): number {
    return this.done.calculatedSize;
  }

  /** Keys with work under way. */
  get inFlight(): number {
    return this.flights.size;
  }
}
