import type { Metrics } from '../metrics.js';
import { Memo, type MemoOutcome } from './memo.js';

export interface CachedResult {
  data: Buffer;
  /** Stored level the bytes came from, and how they were made; kept for the debug headers. */
  level: number;
  /**
   * passthrough: stored JPEG bytes as they are; cut: stored JPEG tiles cut (or joined) without
   * decoding; tile: the stored tiles a region touches, decoded; tiles: the stored tiles under a
   * larger region of a remote file, read by range and joined; sharp: the whole file through
   * libvips; jp2: a JPEG 2000 region decoded by OpenJPEG.
   */
  method: 'passthrough' | 'cut' | 'libjpeg' | 'tile' | 'tiles' | 'sharp' | 'jp2';
}

/** Bookkeeping per entry beyond its bytes: the key, the entry object, the LRU's links. */
const ENTRY_OVERHEAD_BYTES = 256;

/**
 * What an entry really pins in memory. A Buffer can be a small view of a larger allocation
 * (Node's pool slab): the whole allocation stays alive while the view does, so it is what
 * counts against the bound.
 */
export const retainedBytes = (result: CachedResult, key: string): number =>
  Math.max(result.data.byteLength, result.data.buffer.byteLength) + 2 * key.length + ENTRY_OVERHEAD_BYTES;

/**
 * The result with its bytes in an allocation of their own and of their size, so that what the
 * cache counts is what it holds. sharp's output buffers hide their real size: a 43-byte 1×1 GIF
 * keeps about 18 KB of libvips memory alive that neither byteLength nor the ArrayBuffer shows
 * (12,000 of them added 268 MB of RSS while the cache reported 516 KB). Copying a kept result
 * (at most maxItemBytes) lets that memory go with the render.
 */
export const compacted = (result: CachedResult): CachedResult => {
  const data = Buffer.alloc(result.data.length);
  result.data.copy(data);
  return { ...result, data };
};

/**
 * Recently served image bytes, bounded by the memory they really hold, keyed by source
 * version + canonical request, so hot tiles cost no decoding. Concurrent misses for the same
 * key share one render. Results larger than `maxItemBytes` are served but not kept: a few big
 * renders must not flush hundreds of tiles.
 */
export class ResultCache {
  private readonly memo: Memo<CachedResult>;
  private readonly keeps: (result: CachedResult) => boolean;
  private readonly lookups;
  private readonly bytes;

  constructor(maxBytes: number, maxItemBytes: number, metrics: Metrics) {
    this.keeps = (result) => maxBytes > 0 && result.data.byteLength <= maxItemBytes;
    this.memo = new Memo({ maxSize: maxBytes, sizeOf: retainedBytes, keep: this.keeps });
    this.lookups = metrics.counter('iiif_result_cache_lookups_total', 'Rendered-result cache lookups by outcome (hit, miss, shared: joined an identical render in progress).', ['result']);
    this.bytes = metrics.gauge('iiif_result_cache_bytes', 'Bytes of memory held by the rendered-result cache.');
  }

  async get(key: string, render: () => Promise<CachedResult>): Promise<CachedResult & { cache: MemoOutcome }> {
    const { value, outcome } = await this.memo.lookup(key, async () => {
      const result = await render();
      return this.keeps(result) ? compacted(result) : result;
    });
    this.lookups.inc({ result: outcome });
    if (outcome === 'miss') this.bytes.set(this.memo.keptSize);
    return { ...value, cache: outcome };
  }

  /** Drops every result whose key starts with `keyPrefix` (all versions of a source); for the purge path. */
  purge(keyPrefix: string): number {
    const dropped = this.memo.forgetPrefix(keyPrefix);
    this.bytes.set(this.memo.keptSize);
    return dropped;
  }
}
