import { randomUUID } from 'node:crypto';
import { mkdir, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Counter, Gauge } from 'prom-client';
import { ServerError } from '../errors.js';
import type { Metrics } from '../metrics.js';
import type { Log } from './disk-cache.js';

/** The cache cannot store anything right now (folder missing, read-only or full); serve uncached. */
export class CacheUnavailableError extends ServerError {
  constructor(message: string, options?: ErrorOptions) {
    super('CACHE_UNAVAILABLE', message, options);
  }
}

/** The producer finished but the file does not have the promised length: it is thrown away. */
export class IncompleteWriteError extends ServerError {
  constructor(
    readonly expected: number,
    readonly actual: number,
  ) {
    super('CACHE_INCOMPLETE_WRITE', `expected ${expected} bytes, got ${actual}`);
  }
}

/** Names temporary files; a start deletes whatever is left of them. */
export const TEMP_PREFIX = '.tmp-';

// Errors that mean "this folder cannot take writes", as opposed to a failing producer.
const DISK_ERRORS = new Set(['EACCES', 'EPERM', 'EROFS', 'ENOSPC', 'EDQUOT', 'ENOENT', 'ENOTDIR']);

export function isDiskError(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && DISK_ERRORS.has(code);
}

/**
 * What every bounded disk cache shows and how it degrades: hit, miss, eviction and write
 * failure counters, size gauges, and the degraded state — a folder that cannot be written is
 * served around (CacheUnavailableError to the caller, one log line on entering and leaving the
 * state, a gauge), never a crash.
 */
export class DiskState {
  private degraded = false;
  readonly hits: Counter;
  readonly misses: Counter;
  readonly evictions: Counter;
  private readonly writeFailures: Counter;
  private readonly bytesGauge: Gauge;
  private readonly entriesGauge: Gauge;
  private readonly degradedGauge: Gauge;

  constructor(
    private readonly name: string,
    private readonly dir: string,
    metrics: Metrics,
    private readonly log: Log,
  ) {
    const prefix = `iiif_${name}_cache`;
    this.hits = metrics.counter(`${prefix}_hits_total`, `Lookups in the ${name} disk cache that found a file.`);
    this.misses = metrics.counter(`${prefix}_misses_total`, `Lookups in the ${name} disk cache that found nothing.`);
    this.evictions = metrics.counter(`${prefix}_evictions_total`, `Files deleted from the ${name} disk cache to keep it within its bound.`);
    this.writeFailures = metrics.counter(`${prefix}_write_failures_total`, `Writes to the ${name} disk cache that failed (folder unwritable or full).`);
    this.bytesGauge = metrics.gauge(`${prefix}_bytes`, `Real bytes on disk used by the ${name} disk cache.`);
    this.entriesGauge = metrics.gauge(`${prefix}_entries`, `Files in the ${name} disk cache.`);
    this.degradedGauge = metrics.gauge(`${prefix}_degraded`, `1 while the ${name} disk cache cannot be written and requests are served uncached.`);
  }

  get isDegraded(): boolean {
    return this.degraded;
  }

  /**
   * Creates the folder when needed and indexes what it holds. Never throws: an unusable folder
   * starts the cache degraded.
   */
  async openFolder(index: () => Promise<void>): Promise<void> {
    try {
      await mkdir(this.dir, { recursive: true });
      await index();
    } catch (error) {
      this.noteFailure(error);
    }
  }

  /** Counts a failed write, enters the degraded state, and returns the error for the caller. */
  noteFailure(error: unknown): CacheUnavailableError {
    this.writeFailures.inc();
    if (!this.degraded) {
      this.degraded = true;
      this.degradedGauge.set(1);
      this.log.warn({ err: error, dir: this.dir }, `${this.name} disk cache cannot be written; serving uncached until a write succeeds`);
    }
    return new CacheUnavailableError(`the ${this.name} cache folder cannot be written`, { cause: error });
  }

  noteSuccess(): void {
    if (!this.degraded) return;
    this.degraded = false;
    this.degradedGauge.set(0);
    this.log.info({ dir: this.dir }, `${this.name} disk cache is writable again`);
  }

  publish(bytes: number, entries: number): void {
    this.bytesGauge.set(bytes);
    this.entriesGauge.set(entries);
  }
}

export async function deleteFiles(...paths: string[]): Promise<void> {
  await Promise.all(paths.map((path) => unlink(path).catch(() => undefined)));
}

/** Writes a file whole or not at all: a reader (or a restart) never sees it half written. */
export async function writeAtomically(path: string, data: string | Uint8Array): Promise<void> {
  const temp = join(dirname(path), `${TEMP_PREFIX}${randomUUID()}`);
  try {
    await writeFile(temp, data);
    await rename(temp, path);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

export async function diskBytes(...paths: string[]): Promise<number> {
  const sizes = await Promise.all(paths.map(async (p) => allocated(await stat(p))));
  return sizes.reduce((a, b) => a + b, 0);
}

/** Real space taken on disk: allocated 512-byte blocks, which is what fills a volume. */
export function allocated(info: { blocks: number; size: number }): number {
  return info.blocks > 0 || info.size === 0 ? info.blocks * 512 : info.size;
}
