import { stat } from 'node:fs/promises';
import { DiskCache, type Log } from '../../cache/disk-cache.js';
import { versionKey } from '../../cache/keys.js';
import { SingleFlight } from '../../cache/single-flight.js';
import type { Metrics } from '../../metrics.js';
import type { SourceRef } from '../../source/source.js';
import type { ImageMetadata } from '../metadata/types.js';
import { decoding } from '../vanished.js';
import { buildPyramid, wantsPyramid, type PyramidOptions } from './convert.js';

export interface PyramidSettings extends PyramidOptions {
  dir: string;
  maxBytes: number;
  /** Single-level images with at least this many pixels are converted on first touch. */
  thresholdPixels: number;
}

/** A stored pyramid: its file and length. */
export interface BuiltPyramid {
  path: string;
  size: number;
}

interface PyramidMeta {
  /** The source version the pyramid was built from; a newer source builds a new one. */
  version: string;
}

/**
 * Tiled pyramidal TIFFs made from sources that have none (large flat JPEG/PNG/WebP/TIFF, and
 * JPEG 2000, which libvips cannot read), kept in their own bounded disk cache: built once per
 * source version however many requests ask at once, written atomically, evicted least
 * recently used, and found again after a restart.
 */
export class Pyramids {
  private readonly building = new SingleFlight<BuiltPyramid>();
  private readonly builds;
  private readonly buildSeconds;

  private constructor(
    private readonly cache: DiskCache<PyramidMeta>,
    private readonly settings: PyramidSettings,
    metrics: Metrics,
  ) {
    this.builds = metrics.counter('iiif_pyramid_builds_total', 'Pyramids converted on first touch, by result.', ['result']);
    this.buildSeconds = metrics.histogram('iiif_pyramid_build_seconds', 'Time to convert one source into a pyramid.', [], [0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120]);
  }

  static async open(settings: PyramidSettings, metrics: Metrics, log: Log): Promise<Pyramids> {
    const cache = await DiskCache.open<PyramidMeta>({ dir: settings.dir, maxBytes: settings.maxBytes, name: 'pyramid', metrics, log });
    return new Pyramids(cache, settings, metrics);
  }

  wants(metadata: Pick<ImageMetadata, 'width' | 'height' | 'levels' | 'progressive'>): boolean {
    return wantsPyramid(metadata, this.settings.thresholdPixels);
  }

  /** Whether this source version's pyramid is already stored (nothing to build). */
  has(source: SourceRef): boolean {
    return this.cache.peek(source.identifier)?.meta.version === source.version;
  }

  /**
   * The pyramid of this source version, built on first touch from the whole source (throws
   * CacheUnavailableError when it cannot be stored).
   */
  async pyramidFor(source: SourceRef, schedule: <T>(work: () => Promise<T>) => Promise<T>): Promise<BuiltPyramid> {
    const current = this.cache.get(source.identifier);
    if (current?.meta.version === source.version) return current;
    return this.building.run(versionKey(source.identifier, source.version), async () => {
      // Fetched before queueing: a download must not hold a conversion slot.
      const input = await source.file.whole();
      return schedule(async () => {
        const done = this.buildSeconds.startTimer();
        try {
          const entry = await this.cache.put(source.identifier, async (temp) => {
            await decoding(input, (whole) => buildPyramid(whole, temp, this.settings));
            return { size: (await stat(temp)).size, meta: { version: source.version } };
          });
          this.builds.inc({ result: 'built' });
          return entry;
        } catch (error) {
          this.builds.inc({ result: 'failed' });
          throw error;
        } finally {
          done();
        }
      });
    });
  }

  /** Drops an identifier's pyramid (an operator's purge). */
  forget(identifier: string): Promise<boolean> {
    return this.cache.remove(identifier);
  }
}
