import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import type { Metrics } from '../metrics.js';
import type { Log } from './disk-cache.js';
import { allocated, CacheUnavailableError, deleteFiles, DiskState, IncompleteWriteError, isDiskError, TEMP_PREFIX, writeAtomically } from './disk-state.js';

export interface BlockCacheOptions {
  dir: string;
  /** Bound on the folder's real size on disk (allocated blocks of every file). */
  maxBytes: number;
  metrics: Metrics;
  log: Log;
}

/** One version of one object, as the cache files it: a folder per key and version. */
export interface CachedObject {
  key: string;
  version: string;
  /** `<hash of key>/<hash of version>`, relative to the cache folder. */
  readonly folder: string;
}

/** What the source remembers about a key's current version (its size, when it last asked). */
export interface ObjectRecord<R> {
  version: string;
  record: R;
}

interface Entry {
  /** Relative path: folder/name. */
  path: string;
  folder: string;
  /** Real bytes on disk. */
  bytes: number;
}

interface RecordFile<R> {
  key: string;
  version: string;
  record: R;
}

const RECORD = 'record.json';
const BLOCK = /^b(\d{1,12})$/;
const WHOLE = /^whole-(\d{1,16})$/;
const HASHED = /^[0-9a-f]{32}$/;
/** Block files start with a header: magic, data length, CRC-32 of the data. */
const MAGIC = 0x49494231; // "IIB1"
const HEADER_BYTES = 12;
/** Stats at once while indexing the folder at start. */
const STAT_CONCURRENCY = 32;
/** The allocation unit assumed when the folder's cannot be read (ext4's, XFS's). */
const DEFAULT_BLOCK_SIZE = 4096;

const hash = (text: string): string => createHash('sha256').update(text).digest('hex').slice(0, 32);

/**
 * The S3 source's bounded disk cache: fixed-size blocks of object versions (what ranged reads
 * fetched), whole objects (for formats decoded whole), and a small record per key (its current
 * version). One least-recently-used order over all of them, by real bytes on disk.
 *
 * - Files live in `<hash of key>/<hash of version>/`, so bytes of two versions never meet and
 *   a version's blocks are found by name: `b<index>` (a header with the data's length and
 *   CRC-32, checked on every read, so a damaged block is refetched, never served), `whole-<size>`
 *   (checked against its length), `record.json`.
 * - Every file is written to a temporary name and renamed into place when complete: a reader,
 *   or a restart, never sees half a file. A start rebuilds the index from the folder (recency
 *   from modification times) and deletes temporaries and anything it does not recognise.
 * - A folder that cannot be written (gone, read-only, full) degrades to serving uncached
 *   (CacheUnavailableError to the caller); a folder deleted while running is recreated by the
 *   next write, and its lost files are refetched.
 */
export class BlockCache<R> {
  private readonly entries = new Map<string, Entry>(); // insertion order = recency, oldest first
  private readonly folders = new Map<string, Set<string>>(); // folder → names in it
  private readonly records = new Map<string, { folder: string; file: RecordFile<R> }>(); // by key
  private readonly recordFolders = new Map<string, string>(); // folder → key
  private totalBytes = 0;
  private readonly state: DiskState;
  /** Writes under way that no request waits for. */
  private readonly pending = new Set<Promise<void>>();
  /** Object folders this process made or wrote into: no mkdir per block (one vanished meanwhile is made again). */
  private readonly madeFolders = new Set<string>();
  /** The folder's allocation unit, so a file's real size is known without a stat after each write. */
  private blockSize = DEFAULT_BLOCK_SIZE;

  private constructor(private readonly options: BlockCacheOptions) {
    this.state = new DiskState('source', options.dir, options.metrics, options.log);
  }

  /** Opens (creating when needed) and indexes the folder. Never throws: an unusable folder starts degraded. */
  static async open<R>(options: BlockCacheOptions): Promise<BlockCache<R>> {
    const cache = new BlockCache<R>(options);
    await cache.state.openFolder(async () => {
      cache.blockSize = (await stat(options.dir)).blksize || DEFAULT_BLOCK_SIZE;
      await cache.rebuild();
    });
    cache.publish();
    return cache;
  }

  get bytes(): number {
    return this.totalBytes;
  }

  get isDegraded(): boolean {
    return this.state.isDegraded;
  }

  object(key: string, version: string): CachedObject {
    return { key, version, folder: `${this.keyFolder(key)}/${hash(version)}` };
  }

  /** The folder of every version of a key (what each CachedObject's folder starts with). */
  keyFolder(key: string): string {
    return hash(key);
  }

  /** The remembered current version of a key, marked recently used. */
  record(key: string): ObjectRecord<R> | undefined {
    const found = this.records.get(key);
    if (!found) return undefined;
    this.touch(`${found.folder}/${RECORD}`);
    return { version: found.file.version, record: found.file.record };
  }

  /**
   * Remembers `object` as its key's current version at once; deleting every other version's
   * files and writing the record happen in the background. A record that cannot be written is
   * kept in memory only (it saves a request after a restart, nothing more).
   */
  setRecord(object: CachedObject, record: R): void {
    const file: RecordFile<R> = { key: object.key, version: object.version, record };
    this.remember(object.folder, file);
    this.inBackground(async () => {
      await this.dropOtherVersions(object);
      const json = JSON.stringify(file);
      const bytes = await this.store(object, RECORD, Buffer.byteLength(json), (path) => writeAtomically(path, json));
      // Replaced meanwhile by a newer version: this one's folder is garbage.
      if (this.records.get(object.key)?.file !== file) return;
      this.index({ path: `${object.folder}/${RECORD}`, folder: object.folder, bytes });
      await this.evictToBound(`${object.folder}/${RECORD}`);
    });
  }

  /** Stores block `index` in the background: no request waits for the disk, and a failure only costs a later fetch. */
  keepBlock(object: CachedObject, index: number, data: Buffer): void {
    this.inBackground(() => this.writeBlock(object, index, data));
  }

  /** Waits for the background writes (before a restart reads the folder). */
  async settle(): Promise<void> {
    while (this.pending.size > 0) await Promise.all(this.pending);
  }

  /** Forgets a key's record, so its version is asked for again; its blocks stay for that version. */
  async forgetRecord(key: string): Promise<void> {
    const found = this.records.get(key);
    if (!found) return;
    this.forget(key);
    await this.drop(`${found.folder}/${RECORD}`, true);
    this.publish();
  }

  /** Whether block `index` of the object is stored (no I/O). */
  hasBlock(object: CachedObject, index: number): boolean {
    return this.entries.has(`${object.folder}/b${index}`);
  }

  /** Marks a stored block recently used (it was read from memory, so its file was not). */
  touchBlock(object: CachedObject, index: number): void {
    this.touch(`${object.folder}/b${index}`);
  }

  /**
   * Block `index` when it is stored intact; undefined otherwise (never stored, evicted, or
   * damaged on disk — then it is deleted). Counts a hit or a miss.
   */
  async readBlock(object: CachedObject, index: number): Promise<Buffer | undefined> {
    const path = `${object.folder}/b${index}`;
    if (!this.entries.has(path)) {
      this.state.misses.inc();
      return undefined;
    }
    const file = await readFile(join(this.options.dir, path)).catch(() => undefined);
    const data = file && blockData(file);
    if (!data) {
      this.state.misses.inc();
      await this.drop(path, true);
      this.publish();
      return undefined;
    }
    this.state.hits.inc();
    this.touch(path);
    return data;
  }

  /** Stores block `index`; throws CacheUnavailableError when the folder cannot take it. */
  async writeBlock(object: CachedObject, index: number, data: Buffer): Promise<void> {
    if (data.length > this.options.maxBytes) throw new CacheUnavailableError(`a ${data.length}-byte block does not fit a ${this.options.maxBytes}-byte cache`);
    const name = `b${index}`;
    const header = Buffer.alloc(HEADER_BYTES);
    header.writeUInt32BE(MAGIC, 0);
    header.writeUInt32BE(data.length, 4);
    header.writeUInt32BE(crc32(data), 8);
    const bytes = await this.store(object, name, HEADER_BYTES + data.length, (path) => writeAtomically(path, Buffer.concat([header, data])));
    this.index({ path: `${object.folder}/${name}`, folder: object.folder, bytes });
    await this.evictToBound(`${object.folder}/${name}`);
  }

  /** The stored whole object of `size` bytes, when it is there; counts a hit or a miss. */
  async wholePath(object: CachedObject, size: number): Promise<string | undefined> {
    const path = `${object.folder}/whole-${size}`;
    const full = join(this.options.dir, path);
    // Checked on disk: the folder may have been emptied behind our back.
    if (this.entries.has(path) && (await stat(full).then((info) => info.size === size, () => false))) {
      this.state.hits.inc();
      this.touch(path);
      return full;
    }
    this.state.misses.inc();
    if (this.entries.has(path)) await this.drop(path, true);
    return undefined;
  }

  /**
   * Stores the whole object, written by `produce` to the temporary path it is given, and
   * returns its path. Throws CacheUnavailableError when the folder cannot take it (the caller
   * serves it from memory), IncompleteWriteError on a length mismatch, or the producer's error.
   */
  async putWhole(object: CachedObject, size: number, produce: (tempPath: string) => Promise<void>): Promise<string> {
    if (size > this.options.maxBytes) throw new CacheUnavailableError(`a ${size}-byte object does not fit a ${this.options.maxBytes}-byte cache`);
    const name = `whole-${size}`;
    const bytes = await this.store(object, name, size, async (path) => {
      const temp = join(this.options.dir, `${TEMP_PREFIX}${randomUUID()}`);
      try {
        // Fails fast, before any download, when the folder cannot be written.
        await writeFile(temp, '');
        await produce(temp);
        const written = (await stat(temp)).size;
        if (written !== size) throw new IncompleteWriteError(size, written);
        await rename(temp, path);
      } finally {
        await deleteFiles(temp);
      }
    });
    this.index({ path: `${object.folder}/${name}`, folder: object.folder, bytes });
    await this.evictToBound(`${object.folder}/${name}`);
    return join(this.options.dir, object.folder, name);
  }

  /** Deletes everything stored for a key (every version) and its record; true when there was anything. */
  async dropKey(key: string): Promise<boolean> {
    const had = this.forget(key);
    const prefix = `${hash(key)}/`;
    const folders = [...this.folders.keys()].filter((folder) => folder.startsWith(prefix));
    for (const folder of folders) await this.dropFolder(folder);
    this.publish();
    return had || folders.length > 0;
  }

  private inBackground(work: () => Promise<void>): void {
    const running = work().catch(() => undefined);
    this.pending.add(running);
    void running.then(() => this.pending.delete(running));
  }

  /**
   * Writes one file of `size` bytes into the object's folder through `write` (which must
   * replace the file atomically) and returns its real size on disk; disk trouble becomes
   * CacheUnavailableError.
   */
  private async store(object: CachedObject, name: string, size: number, write: (path: string) => Promise<void>): Promise<number> {
    const folder = join(this.options.dir, object.folder);
    const path = join(folder, name);
    const attempt = async () => {
      if (!this.madeFolders.has(object.folder)) {
        await mkdir(folder, { recursive: true });
        this.madeFolders.add(object.folder);
      }
      await write(path);
    };
    try {
      // Once more if the folder vanished in between (a version dropped, emptied by eviction, deleted behind our back).
      await attempt().catch((error: unknown) => {
        if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
        this.madeFolders.delete(object.folder);
        return attempt();
      });
      this.state.noteSuccess();
      // What the file takes on disk, as a stat would tell (and a restart indexes): whole allocation units.
      return Math.ceil(size / this.blockSize) * this.blockSize;
    } catch (error) {
      throw isDiskError(error) ? this.state.noteFailure(error) : error;
    }
  }

  private remember(folder: string, file: RecordFile<R>): void {
    this.forget(file.key);
    this.records.set(file.key, { folder, file });
    this.recordFolders.set(folder, file.key);
  }

  private forget(key: string): boolean {
    const found = this.records.get(key);
    if (!found) return false;
    this.records.delete(key);
    this.recordFolders.delete(found.folder);
    return true;
  }

  private async dropOtherVersions(object: CachedObject): Promise<void> {
    const prefix = `${object.folder.slice(0, object.folder.indexOf('/'))}/`;
    for (const folder of [...this.folders.keys()]) {
      if (folder.startsWith(prefix) && folder !== object.folder) await this.dropFolder(folder);
    }
  }

  private async dropFolder(folder: string): Promise<void> {
    for (const name of [...(this.folders.get(folder) ?? [])]) this.unindex(`${folder}/${name}`);
    this.madeFolders.delete(folder);
    await rm(join(this.options.dir, folder), { recursive: true, force: true });
    await rmdir(join(this.options.dir, folder.slice(0, folder.indexOf('/')))).catch(() => undefined);
  }

  /** Indexes a file as most recently used (replacing the entry for the same path). */
  private index(entry: Entry): void {
    // A newer copy of the same file: its record (if that is what it is) stays.
    this.unindex(entry.path, false);
    this.entries.set(entry.path, entry);
    let names = this.folders.get(entry.folder);
    if (!names) this.folders.set(entry.folder, (names = new Set()));
    names.add(entry.path.slice(entry.folder.length + 1));
    this.totalBytes += entry.bytes;
    this.publish();
  }

  /** Removes a file from the index; a record file's record goes with it unless it is being replaced. */
  private unindex(path: string, forgetRecord = true): Entry | undefined {
    const entry = this.entries.get(path);
    if (!entry) return undefined;
    this.entries.delete(path);
    this.totalBytes -= entry.bytes;
    const names = this.folders.get(entry.folder);
    const name = path.slice(entry.folder.length + 1);
    names?.delete(name);
    if (names?.size === 0) this.folders.delete(entry.folder);
    const key = forgetRecord && name === RECORD ? this.recordFolders.get(entry.folder) : undefined;
    if (key !== undefined) this.forget(key);
    return entry;
  }

  private touch(path: string): void {
    const entry = this.entries.get(path);
    if (!entry) return;
    this.entries.delete(path);
    this.entries.set(path, entry);
  }

  /** Unindexes and deletes one file (and its folder when that was the last). */
  private async drop(path: string, deleteFile: boolean): Promise<void> {
    const entry = this.unindex(path);
    if (!entry || !deleteFile) return;
    await deleteFiles(join(this.options.dir, path));
    if (!this.folders.has(entry.folder)) {
      this.madeFolders.delete(entry.folder);
      await rmdir(join(this.options.dir, entry.folder)).catch(() => undefined);
    }
  }

  /** Deletes least recently used files until within the bound; `keep` (just written) is spared. */
  private async evictToBound(keep?: string): Promise<void> {
    // Oldest first; a Map's iterator skips what is deleted meanwhile.
    for (const path of this.entries.keys()) {
      if (this.totalBytes <= this.options.maxBytes) break;
      if (path === keep) continue;
      this.state.evictions.inc();
      await this.drop(path, true);
    }
    this.publish();
  }

  private async rebuild(): Promise<void> {
    const dir = this.options.dir;
    const found: Array<Entry & { mtimeMs: number }> = [];
    const recordsFound: Array<{ folder: string; file: RecordFile<R>; mtimeMs: number }> = [];
    const unwanted: string[] = [];
    const folders: string[] = [];
    for (const top of await readdir(dir, { withFileTypes: true })) {
      if (!top.isDirectory() || !HASHED.test(top.name)) {
        unwanted.push(top.name);
        continue;
      }
      for (const sub of await readdir(join(dir, top.name), { withFileTypes: true })) {
        const folder = `${top.name}/${sub.name}`;
        if (sub.isDirectory() && HASHED.test(sub.name)) folders.push(folder);
        else unwanted.push(folder);
      }
    }
    await forEachLimited(folders, STAT_CONCURRENCY, async (folder) => {
      for (const name of await readdir(join(dir, folder))) {
        const path = `${folder}/${name}`;
        const info = await stat(join(dir, path)).catch(() => undefined);
        const whole = WHOLE.exec(name);
        const valid =
          info?.isFile() &&
          (BLOCK.test(name) || (whole !== null && Number(whole[1]) === info.size) || (name === RECORD && (await this.readRecord(folder, path, info.mtimeMs, recordsFound))));
        if (!valid || !info) {
          unwanted.push(path);
          continue;
        }
        found.push({ path, folder, bytes: allocated(info), mtimeMs: info.mtimeMs });
      }
    });
    await Promise.all(unwanted.map((path) => rm(join(dir, path), { recursive: true, force: true })));
    for (const entry of found.sort((a, b) => a.mtimeMs - b.mtimeMs)) this.index({ path: entry.path, folder: entry.folder, bytes: entry.bytes });
    // A crash while replacing a version can leave two records for a key: the newer one wins.
    for (const record of recordsFound.sort((a, b) => a.mtimeMs - b.mtimeMs)) {
      const older = this.records.get(record.file.key);
      if (older) await this.dropFolder(older.folder);
      this.remember(record.folder, record.file);
    }
    await this.evictToBound();
  }

  private async readRecord(
    folder: string,
    path: string,
    mtimeMs: number,
    into: Array<{ folder: string; file: RecordFile<R>; mtimeMs: number }>,
  ): Promise<boolean> {
    try {
      const file = JSON.parse(await readFile(join(this.options.dir, path), 'utf8')) as RecordFile<R>;
      if (typeof file.key !== 'string' || typeof file.version !== 'string' || `${hash(file.key)}/${hash(file.version)}` !== folder) return false;
      into.push({ folder, file, mtimeMs });
      return true;
    } catch {
      return false;
    }
  }

  private publish(): void {
    this.state.publish(this.totalBytes, this.entries.size);
  }
}

/** A block file's data when its header is intact and the CRC matches; undefined otherwise. */
function blockData(file: Buffer): Buffer | undefined {
  if (file.length < HEADER_BYTES || file.readUInt32BE(0) !== MAGIC) return undefined;
  const data = file.subarray(HEADER_BYTES);
  return data.length === file.readUInt32BE(4) && crc32(data) === file.readUInt32BE(8) ? data : undefined;
}

async function forEachLimited<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) await work(items[next++]!);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
