import { LRUCache } from 'lru-cache';
import type { BlockCache, CachedObject } from '../cache/block-cache.js';
import { checkRange, type RangeReader } from './range-reader.js';
import type { Piece } from './source.js';

/** One version of a remote object, as read by range. */
export interface RemoteObject extends CachedObject {
  size: number;
}

/** Fetches bytes [start, end) of exactly this version from the store (one request, retried within its deadline). */
export type FetchRange<O extends RemoteObject = RemoteObject> = (object: O, start: number, end: number) => Promise<Buffer>;

export interface BlockReadsOptions {
  /** The unit of fetching and caching. */
  blockBytes: number;
  /** Largest single fetch made of adjacent missing blocks. */
  maxFetchBytes: number;
  /** Memory for recently read blocks (bytes). */
  memoryBytes: number;
}

/** A block in memory. */
interface Recent {
  data: Buffer;
  /** Fetched and used once: its next use writes it to disk. False once written, and for blocks read from disk or read ahead. */
  writeOnReuse: boolean;
}

/**
 * How many blocks that left memory after a single use are remembered, as a multiple of the
 * blocks memory holds: one asked for again within that much later traffic goes to disk as soon
 * as it is fetched again.
 */
const SEEN_ONCE_PER_MEMORY_BLOCK = 16;
/** The share of `memoryBytes` for preloaded pieces of objects (see preload); blocks get the rest. */
const PRELOADED_SHARE = 1 / 4;

interface Waiting {
  resolve(data: Buffer): void;
  reject(error: unknown): void;
  promise: Promise<Buffer>;
}

/**
 * Range reads of remote objects through the block cache. A read becomes the fixed-size blocks
 * it touches; each block comes from memory (recently read), from disk, or from the store. Reads
 * of a block already on its way share it (single flight per block), and the missing blocks of
 * all reads made in the same turn of the event loop are fetched together, adjacent ones in one
 * request (a viewer's tiles of a row are adjacent bytes), up to `maxFetchBytes` a request.
 * Each fetch gets the object as the reader was made with (`O`: where the store keeps it).
 *
 * A block goes to disk on its second use, not its first: when it is read again while still in
 * memory, or fetched again soon after it left memory unused (the cache-on-second-hit rule of
 * CDNs). Most blocks of a fleet's tiles are read once per container (a load balancer spreads an
 * image's tiles over the containers), and writing each of them cost a quarter of a cold
 * container's CPU (a temporary file, a write and a rename per tile: bench/README.md, fleet
 * target c) while pushing blocks with a real second use out of a bounded disk. A single-use
 * block costs one fetch either way. Blocks read ahead (readAhead) are no use: reads of them
 * while they stay in memory write nothing.
 */
export class BlockReads<O extends RemoteObject = RemoteObject> {
  private readonly loading = new Map<string, Promise<Buffer>>();
  private readonly queued = new Map<string, { object: O; blocks: Map<number, Waiting> }>();
  private flushing = false;
  private readonly recent: LRUCache<string, Recent>;
  /** Blocks that left memory after one use (see SEEN_ONCE_PER_MEMORY_BLOCK). */
  private readonly seenOnce: LRUCache<string, true>;
  /** Pieces of objects at hand, by object folder (see preload). */
  private readonly preloaded: LRUCache<string, readonly Piece[]>;

  constructor(
    private readonly cache: BlockCache<unknown>,
    private readonly fetch: FetchRange<O>,
    private readonly options: BlockReadsOptions,
  ) {
    const preloadedBytes = Math.max(1, Math.floor(options.memoryBytes * PRELOADED_SHARE));
    this.preloaded = new LRUCache({
      maxSize: preloadedBytes,
      sizeCalculation: (pieces) => Math.max(1, pieces.reduce((sum, { bytes }) => sum + bytes.length, 0)),
    });
    this.seenOnce = new LRUCache({ max: Math.max(1, Math.ceil(options.memoryBytes / options.blockBytes) * SEEN_ONCE_PER_MEMORY_BLOCK) });
    this.recent = new LRUCache({
      maxSize: Math.max(1, options.memoryBytes - preloadedBytes),
      sizeCalculation: ({ data }) => Math.max(1, data.length),
      dispose: ({ writeOnReuse }, key, reason) => {
        if (reason === 'evict' && writeOnReuse) this.seenOnce.set(key, true);
      },
    });
  }

  reader(object: O): RangeReader {
    return { size: object.size, read: (offset, length) => this.read(object, offset, length) };
  }

  /** Keeps a block fetched another way (the first block comes with the object's version). */
  keep(object: O, index: number, data: Buffer): void {
    this.recent.set(blockKey(object, index), { data, writeOnReuse: false });
    this.cache.keepBlock(object, index, data);
  }

  /**
   * Brings the blocks under a range into memory without counting a use, so that reading them
   * there (any number of times) writes nothing to disk: a derivative's directories, which its
   * reader walks read by read as it opens and then remembers parsed. Fetched blocks of adjacent
   * indices go out together, as for read().
   */
  async readAhead(object: O, offset: number, length: number): Promise<void> {
    checkRange(object.size, offset, length);
    if (length === 0) return;
    const { first, last } = this.blocksUnder(offset, length);
    await Promise.all(
      Array.from({ length: last - first + 1 }, (_, i) => {
        const key = blockKey(object, first + i);
        return this.recent.has(key) ? undefined : (this.loading.get(key) ?? this.loadOnce(object, first + i, key, false));
      }),
    );
  }

  /**
   * Keeps pieces of an object that came with something else (a derivative's directories, with
   * the marker that found it): reads inside one are answered from them, no block involved,
   * while they stay in their bounded share of memory. False when they are larger than it.
   */
  preload(object: O, pieces: readonly Piece[]): boolean {
    // A set larger than the whole share is refused (not kept).
    this.preloaded.set(object.folder, pieces);
    return this.preloaded.has(object.folder);
  }

  /** Drops the blocks kept in memory for every version in `keyFolder` (a purge). */
  forget(keyFolder: string): void {
    for (const key of [...this.preloaded.keys()]) if (key.startsWith(`${keyFolder}/`)) this.preloaded.delete(key);
    for (const key of [...this.recent.keys()]) if (key.startsWith(`${keyFolder}/`)) this.recent.delete(key);
    for (const key of [...this.seenOnce.keys()]) if (key.startsWith(`${keyFolder}/`)) this.seenOnce.delete(key);
  }

  /** Whether every block of the object is at hand (memory or disk), so it can be read whole without a fetch. */
  hasAll(object: O): boolean {
    for (let index = 0; index * this.options.blockBytes < object.size; index++) {
      if (!this.recent.has(blockKey(object, index)) && !this.cache.hasBlock(object, index)) return false;
    }
    return true;
  }

  async read(object: O, offset: number, length: number): Promise<Buffer> {
    checkRange(object.size, offset, length);
    if (length === 0) return Buffer.alloc(0);
    const piece = this.preloaded.get(object.folder)?.find((p) => p.offset <= offset && offset + length <= p.offset + p.bytes.length);
    if (piece) return piece.bytes.subarray(offset - piece.offset, offset - piece.offset + length);
    const { first, last } = this.blocksUnder(offset, length);
    const blocks = await Promise.all(Array.from({ length: last - first + 1 }, (_, i) => this.block(object, first + i)));
    const joined = blocks.length === 1 ? blocks[0]! : Buffer.concat(blocks);
    const start = offset - first * this.options.blockBytes;
    return joined.subarray(start, start + length);
  }

  /** The indices of the first and last blocks a (non-empty) range touches. */
  private blocksUnder(offset: number, length: number): { first: number; last: number } {
    const size = this.options.blockBytes;
    return { first: Math.floor(offset / size), last: Math.floor((offset + length - 1) / size) };
  }

  private block(object: O, index: number): Promise<Buffer> {
    const key = blockKey(object, index);
    const known = this.recent.get(key);
    if (known) {
      if (known.writeOnReuse) {
        known.writeOnReuse = false;
        this.cache.keepBlock(object, index, known.data);
      } else {
        // Keeps its file (if it has one) from looking unused on disk while it is hot in memory.
        this.cache.touchBlock(object, index);
      }
      return Promise.resolve(known.data);
    }
    return this.loading.get(key) ?? this.loadOnce(object, index, key, true);
  }

  /** Loads a block, shared by every read of it until it is in memory (single flight per block). */
  private loadOnce(object: O, index: number, key: string, use: boolean): Promise<Buffer> {
    const loading = this.load(object, index, key, use);
    this.loading.set(key, loading);
    const done = () => {
      if (this.loading.get(key) === loading) this.loading.delete(key);
    };
    loading.then(done, done);
    return loading;
  }

  /**
   * From disk when stored intact, else from the store, then kept in memory; a fetched block
   * that is a `use` goes to disk in the background on its second one (this, when it was used
   * once before and left memory).
   */
  private async load(object: O, index: number, key: string, use: boolean): Promise<Buffer> {
    const onDisk = this.cache.hasBlock(object, index) ? await this.cache.readBlock(object, index) : undefined;
    if (onDisk) {
      this.recent.set(key, { data: onDisk, writeOnReuse: false });
      return onDisk;
    }
    const data = await this.enqueue(object, index);
    const secondUse = use && this.seenOnce.delete(key);
    if (secondUse) this.cache.keepBlock(object, index, data);
    this.recent.set(key, { data, writeOnReuse: use && !secondUse });
    return data;
  }

  private enqueue(object: O, index: number): Promise<Buffer> {
    let batch = this.queued.get(object.folder);
    if (!batch) this.queued.set(object.folder, (batch = { object, blocks: new Map() }));
    let waiting = batch.blocks.get(index);
    if (!waiting) batch.blocks.set(index, (waiting = deferred()));
    if (!this.flushing) {
      this.flushing = true;
      // Everything asked for in this turn of the event loop goes out together.
      setImmediate(() => this.flush());
    }
    return waiting.promise;
  }

  private flush(): void {
    this.flushing = false;
    const batches = [...this.queued.values()];
    this.queued.clear();
    const size = this.options.blockBytes;
    const perFetch = Math.max(1, Math.floor(this.options.maxFetchBytes / size));
    for (const { object, blocks } of batches) {
      const indices = [...blocks.keys()].sort((a, b) => a - b);
      for (const run of adjacentRuns(indices, perFetch)) {
        const first = run[0]!;
        this.fetch(object, first * size, Math.min((run[run.length - 1]! + 1) * size, object.size)).then(
          (bytes) => {
            for (const index of run) {
              const part = bytes.subarray((index - first) * size, (index - first + 1) * size);
              // A copy, so a block kept in memory does not pin the whole response.
              blocks.get(index)!.resolve(run.length === 1 ? part : Buffer.from(part));
            }
          },
          (error: unknown) => {
            for (const index of run) blocks.get(index)!.reject(error);
          },
        );
      }
    }
  }
}

const blockKey = (object: CachedObject, index: number): string => `${object.folder}/${index}`;

/** Sorted indices cut into runs of consecutive ones, each at most `limit` long. */
function adjacentRuns(indices: number[], limit: number): number[][] {
  const runs: number[][] = [];
  for (const index of indices) {
    const run = runs[runs.length - 1];
    if (run && run[run.length - 1] === index - 1 && run.length < limit) run.push(index);
    else runs.push([index]);
  }
  return runs;
}

function deferred(): Waiting {
  let resolve!: (data: Buffer) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<Buffer>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  return { resolve, reject, promise };
}
