import { LRUCache } from 'lru-cache';
import type { Metrics } from '../metrics.js';

export interface CachedResult {
  data: Buffer;
  /** Stored level the bytes came from, and how they were made; kept for the debug headers. */
  level: number;
  /**
   * passthrough: stored JPEG bytes as they are; cut: a stored JPEG tile cut without decoding;
   * tile: one stored tile decoded; sharp: the file through libvips.
   */
  method: 'passthrough' | 'cut' | 'tile' | 'sharp';
}

/**
 * Recently served image bytes, bounded by total bytes, keyed by source version + canonical
 * request, so hot tiles cost no decoding. Concurrent misses for the same key share one
 * render. Results larger than `maxItemBytes` are served but not kept: a few big renders must
 * not flush hundreds of tiles.
 */
export class ResultCache {
  private readonly entries: LRUCache<string, CachedResult>;
  private readonly pending = new Map<string, Promise<CachedResult>>();
  private readonly lookups;
  private readonly bytes;

  constructor(
    maxBytes: number,
    private readonly maxItemBytes: number,
    metrics: Metrics,
  ) {
    this.entries = new LRUCache({ maxSize: Math.max(1, maxBytes), sizeCalculation: (entry) => entry.data.length || 1 });
    this.lookups = metrics.counter('iiif_result_cache_lookups_total', 'Rendered-result cache lookups by outcome (hit, miss, shared: joined an identical render in progress).', ['result']);
    this.bytes = metrics.gauge('iiif_result_cache_bytes', 'Bytes held by the rendered-result cache.');
  }

  async get(key: string, render: () => Promise<CachedResult>): Promise<CachedResult & { cache: 'hit' | 'miss' | 'shared' }> {
    const cached = this.entries.get(key);
    if (cached) {
      this.lookups.inc({ result: 'hit' });
      return { ...cached, cache: 'hit' };
    }
    const inFlight = this.pending.get(key);
    if (inFlight) {
      this.lookups.inc({ result: 'shared' });
      return { ...(await inFlight), cache: 'shared' };
    }
    this.lookups.inc({ result: 'miss' });
    const work = render();
    this.pending.set(key, work);
    try {
      const result = await work;
      if (result.data.length <= this.maxItemBytes) {
        this.entries.set(key, result);
        this.bytes.set(this.entries.calculatedSize);
      }
      return { ...result, cache: 'miss' };
    } finally {
      this.pending.delete(key);
    }
  }

  /** Drops every result of one source (all versions); for the purge path. */
  purge(keyPrefix: string): number {
    let dropped = 0;
    for (const key of [...this.entries.keys()]) {
      if (key.startsWith(keyPrefix)) {
        this.entries.delete(key);
        dropped++;
      }
    }
    this.bytes.set(this.entries.calculatedSize);
    return dropped;
  }
}
