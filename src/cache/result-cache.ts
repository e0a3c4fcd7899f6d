import type { Metrics } from '../metrics.js';
import { Memo, type MemoOutcome } from './memo.js';

export interface CachedResult {
  data: Buffer;
  /** Stored level the bytes came from, and how they were made; kept for the debug headers. */
  level: number;
  /**
<<<<<<< HEAD
   * passthrough: stored JPEG bytes as they are; cut: a stored JPEG tile cut without decoding;
   * tile: one stored tile decoded; tiles: the stored tiles under the region, read by range and
   * joined; sharp: the whole file through libvips; jp2: a JPEG 2000 region decoded by OpenJPEG.
=======
   * passthrough: stored JPEG bytes as they are; cut: stored JPEG tiles cut (or joined) without
   * decoding; tile: stored tiles decoded; sharp: the file through libvips.
>>>>>>> foreign-tiles
   */
  method: 'passthrough' | 'cut' | 'tile' | 'tiles' | 'sharp' | 'jp2';
}

/** Bookkeeping per entry beyond its bytes: the key, the entry object, the LRU's links. */
const ENTRY_OVERHEAD_BYTES = 256;

/**
 * What an entry really pins in memory. A Buffer can be a small view of a larger allocation
 * (libvips output, Node's pool slab): the whole allocation stays alive while the view does, so
 * it is what counts against the bound.
 */
export const retainedBytes = (result: CachedResult, key: string): number =>
  Math.max(result.data.byteLength, result.data.buffer.byteLength) + 2 * key.length + ENTRY_OVERHEAD_BYTES;

/**
 * Recently served image bytes, bounded by the memory they really hold, keyed by source
 * version + canonical request, so hot tiles cost no decoding. Concurrent misses for the same
 * key share one render. Results larger than `maxItemBytes` are served but not kept: a few big
 * renders must not flush hundreds of tiles.
 */
export class ResultCache {
  private readonly memo: Memo<CachedResult>;
  private readonly lookups;
  private readonly bytes;

  constructor(maxBytes: number, maxItemBytes: number, metrics: Metrics) {
    this.memo = new Memo({
      maxSize: maxBytes,
      sizeOf: retainedBytes,
      keep: (result) => maxBytes > 0 && result.data.byteLength <= maxItemBytes,
    });
    this.lookups = metrics.counter('iiif_result_cache_lookups_total', 'Rendered-result cache lookups by outcome (hit, miss, shared: joined an identical render in progress).', ['result']);
    this.bytes = metrics.gauge('iiif_result_cache_bytes', 'Bytes of memory held by the rendered-result cache.');
  }

  async get(key: string, render: () => Promise<CachedResult>): Promise<CachedResult & { cache: MemoOutcome }> {
    const { value, outcome } = await this.memo.lookup(key, render);
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
