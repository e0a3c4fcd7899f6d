import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Metrics } from '../metrics.js';
import {
  allocated,
  CacheUnavailableError,
  deleteFiles,
  diskBytes,
  DiskState,
  IncompleteWriteError,
  isDiskError,
  TEMP_PREFIX,
  writeAtomically,
} from './disk-state.js';

/** What the cache layers need from a logger (a subset of pino's). */
export interface Log {
  warn(details: object, message: string): void;
  info(details: object, message: string): void;
}

export interface DiskCacheOptions {
  dir: string;
  /** Bound on the folder's real size on disk (allocated blocks of data and sidecar files). */
  maxBytes: number;
  /** Names the metrics: iiif_{name}_cache_hits_total and so on. */
  name: string;
  metrics: Metrics;
  log: Log;
}

export interface CachedFile<M> {
  key: string;
  /** The complete file; never a partial write. */
  path: string;
  /** Bytes of content (what the producer wrote). */
  size: number;
  meta: M;
}

/** What a producer reports after writing the temporary file it was handed. */
export interface Produced<M> {
  /** The byte count the file must have; anything else is an incomplete write and is discarded. */
  size: number;
  meta: M;
}

const DATA_SUFFIX = '.data';
const META_SUFFIX = '.json';

interface Entry<M> extends CachedFile<M> {
  metaPath: string;
  /** Real bytes on disk of the data file and its sidecar. */
  diskBytes: number;
}

interface Sidecar<M> {
  key: string;
  size: number;
  meta: M;
}

/**
 * A bounded folder of whole files, keyed by any string, for any layer that needs local copies
 * (converted pyramids; remote sources use the block cache, block-cache.ts).
 *
 * - Producers write to a temporary file in the same folder; it is renamed into place only when
 *   its length matches what the producer promised, so a reader never sees a partial file. A
 *   sidecar JSON beside each file keeps the key, length and the caller's metadata (an S3 ETag,
 *   a fetch time), and is written after the data, so a crash between the two leaves an entry
 *   without a sidecar, which the next start deletes. Each stored version gets fresh file names,
 *   so replacing or evicting one version never races with another being put in place.
 * - Least-recently-used entries are deleted until the folder's real size (allocated blocks,
 *   sidecars included) is within the bound. A file being read is not reference-counted: on
 *   POSIX, unlinking a file that sharp has open leaves its bytes readable until closed, and the
 *   short window between handing out a path and opening it is covered by the image pipeline
 *   resolving once more when the file has gone (src/image/images.ts). Eviction picks the least
 *   recently used entry, so that only happens when the cache is smaller than what concurrent
 *   requests touch.
 * - At start the index is rebuilt from the folder (leftover temporary files and entries without
 *   a valid sidecar are deleted); recency after a restart follows the files' modification times.
 * - A folder that cannot be written degrades to serving uncached (CacheUnavailableError to the
 *   caller, one log line on entering and leaving that state, a gauge), never to a crash.
 */
export class DiskCache<M> {
  private readonly entries = new Map<string, Entry<M>>(); // insertion order = recency, oldest first
  private totalBytes = 0;
  private readonly state: DiskState;

  private constructor(private readonly options: DiskCacheOptions) {
    this.state = new DiskState(options.name, options.dir, options.metrics, options.log);
  }

  /** Opens (creating when needed) and indexes the folder. Never throws: an unusable folder starts degraded. */
  static async open<M>(options: DiskCacheOptions): Promise<DiskCache<M>> {
    const cache = new DiskCache<M>(options);
    await cache.state.openFolder(() => cache.rebuild());
    cache.publish();
    return cache;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  get isDegraded(): boolean {
    return this.state.isDegraded;
  }

  /** The entry for key, marked most recently used; counts a hit or a miss. */
  get(key: string): CachedFile<M> | undefined {
    const entry = this.entries.get(key);
    if (!entry) {
      this.state.misses.inc();
      return undefined;
    }
    this.state.hits.inc();
    this.entries.delete(key);
    this.entries.set(key, entry);
    return entry;
  }

  /** The entry for key without touching recency or counters. */
  peek(key: string): CachedFile<M> | undefined {
    return this.entries.get(key);
  }

  /**
   * Stores what `produce` writes to the temporary path it is given, replacing any entry for the
   * key. Throws CacheUnavailableError when the folder cannot take the file (the caller serves
   * uncached), IncompleteWriteError on a length mismatch, or the producer's own error.
   */
  async put(key: string, produce: (tempPath: string) => Promise<Produced<M>>): Promise<CachedFile<M>> {
    const temp = join(this.options.dir, `${TEMP_PREFIX}${randomUUID()}`);
    try {
      // Fails fast, before any download, when the folder is gone, read-only or full.
      await mkdir(this.options.dir, { recursive: true });
      await writeFile(temp, '');
    } catch (error) {
      throw this.state.noteFailure(error);
    }
    let produced: Produced<M>;
    try {
      produced = await produce(temp);
      const written = (await stat(temp)).size;
      if (written !== produced.size) throw new IncompleteWriteError(produced.size, written);
      if (produced.size > this.options.maxBytes) {
        throw new CacheUnavailableError(`a ${produced.size}-byte file does not fit a ${this.options.maxBytes}-byte cache`);
      }
    } catch (error) {
      await deleteFiles(temp);
      throw isDiskError(error) ? this.state.noteFailure(error) : error;
    }
    // Every stored version gets fresh names, so no path is ever reused: an eviction or a
    // replacement unlinking an old version can never hit a file that is being put in place.
    const { data, meta } = this.freshPaths(key);
    try {
      await rename(temp, data);
      await writeAtomically(meta, JSON.stringify({ key, size: produced.size, meta: produced.meta } satisfies Sidecar<M>));
      const entry: Entry<M> = { key, path: data, metaPath: meta, size: produced.size, meta: produced.meta, diskBytes: await diskBytes(data, meta) };
      await this.insert(entry);
      this.state.noteSuccess();
      await this.evictToBound(key);
      return entry;
    } catch (error) {
      await deleteFiles(temp, data, meta);
      throw isDiskError(error) ? this.state.noteFailure(error) : error;
    }
  }

  /** Replaces an entry's metadata (e.g. a revalidation time); a failure only costs a later refetch. */
  async updateMeta(key: string, meta: M): Promise<void> {
    const entry = this.entries.get(key);
    if (!entry) return;
    entry.meta = meta;
    try {
      await writeAtomically(entry.metaPath, JSON.stringify({ key, size: entry.size, meta } satisfies Sidecar<M>));
    } catch (error) {
      this.state.noteFailure(error);
    }
  }

  /** Deletes the entry for key; true when there was one. */
  async remove(key: string): Promise<boolean> {
    const entry = this.entries.get(key);
    if (!entry) return false;
    await this.drop(entry);
    this.publish();
    return true;
  }

  private freshPaths(key: string): { data: string; meta: string } {
    const stem = join(this.options.dir, `${keyHash(key)}-${randomUUID()}`);
    return { data: stem + DATA_SUFFIX, meta: stem + META_SUFFIX };
  }

  /** Indexes an entry as most recently used, deleting the files of the version it replaces. */
  private async insert(entry: Entry<M>): Promise<void> {
    const old = this.entries.get(entry.key);
    if (old) this.unindex(old);
    this.entries.set(entry.key, entry);
    this.totalBytes += entry.diskBytes;
    this.publish();
    if (old) await deleteFiles(old.path, old.metaPath);
  }

  /** Unindexes and deletes exactly this entry (not a newer one for the same key). */
  private async drop(entry: Entry<M>): Promise<void> {
    if (this.unindex(entry)) await deleteFiles(entry.path, entry.metaPath);
  }

  private unindex(entry: Entry<M>): boolean {
    if (this.entries.get(entry.key) !== entry) return false;
    this.entries.delete(entry.key);
    this.totalBytes -= entry.diskBytes;
    return true;
  }

  /** Deletes least recently used entries until within the bound; `keep` (just written) is spared. */
  private async evictToBound(keep?: string): Promise<void> {
    for (const entry of [...this.entries.values()]) {
      if (this.totalBytes <= this.options.maxBytes) break;
      if (entry.key === keep || this.entries.get(entry.key) !== entry) continue;
      this.state.evictions.inc();
      await this.drop(entry);
    }
    this.publish();
  }

  private async rebuild(): Promise<void> {
    const names = await readdir(this.options.dir);
    const newest = new Map<string, { entry: Entry<M>; mtimeMs: number }>();
    for (const name of names.filter((n) => n.endsWith(META_SUFFIX))) {
      const metaPath = join(this.options.dir, name);
      const data = metaPath.slice(0, -META_SUFFIX.length) + DATA_SUFFIX;
      try {
        const sidecar = JSON.parse(await readFile(metaPath, 'utf8')) as Sidecar<M>;
        const [dataInfo, metaInfo] = await Promise.all([stat(data), stat(metaPath)]);
        if (typeof sidecar.key !== 'string' || !name.startsWith(`${keyHash(sidecar.key)}-`) || dataInfo.size !== sidecar.size) continue;
        const found = {
          entry: { key: sidecar.key, path: data, metaPath, size: sidecar.size, meta: sidecar.meta, diskBytes: allocated(dataInfo) + allocated(metaInfo) },
          mtimeMs: Math.max(dataInfo.mtimeMs, metaInfo.mtimeMs),
        };
        // A crash while replacing can leave two versions of one key: the newer wins.
        const other = newest.get(sidecar.key);
        if (!other || other.mtimeMs < found.mtimeMs) newest.set(sidecar.key, found);
      } catch {
        // Unreadable sidecar or missing data: the pair is deleted below.
      }
    }
    const kept = [...newest.values()].sort((a, b) => a.mtimeMs - b.mtimeMs);
    const valid = new Set(kept.flatMap(({ entry }) => [entry.path, entry.metaPath]));
    // Leftover temporary files, superseded versions, data without a sidecar and anything unrecognised go.
    await deleteFiles(...names.map((n) => join(this.options.dir, n)).filter((path) => !valid.has(path)));
    for (const { entry } of kept) await this.insert(entry);
    await this.evictToBound();
  }

  private publish(): void {
    this.state.publish(this.totalBytes, this.entries.size);
  }
}

const keyHash = (key: string): string => createHash('sha256').update(key).digest('hex');
