import { LRUCache } from 'lru-cache';
import sharp from 'sharp';
import { CacheUnavailableError } from '../cache/disk-cache.js';
import { sourceTooLarge, sourceUnavailable, undecodableSource } from '../errors.js';
import type { Dimensions } from '../iiif/plan.js';
import { sourceInput, type SourceRef } from '../source/source.js';
import { isJpeg2000 } from './jpeg2000.js';
import type { Pyramids } from './pyramids.js';
import { readTiffLayout, type TiffPage } from './tiff-layout.js';

/** One resolution stored in the file: page 0 is the full image, later pages smaller copies. */
export interface Level extends Dimensions {
  page: number;
}

export interface ImageMetadata extends Dimensions {
  /** Full-size first, then each smaller stored resolution (pyramidal TIFF pages), largest first. */
  levels: Level[];
  /** Whether EXIF orientation must be applied (width/height above are already oriented). */
  autoOrient: boolean;
  /** The tile layout of a tiled TIFF on disk, for sending stored JPEG tiles as they are. */
  tiffPages: TiffPage[] | undefined;
}

/** What renders read for a source version: its own file, or the pyramid made from it. */
export interface Prepared {
  /** The pyramid's path when one was built; otherwise the source is read as it is. */
  pyramidPath: string | undefined;
  metadata: ImageMetadata;
}

/** Runs expensive work (a pyramid conversion) through admission control. */
export type Schedule = <T>(work: () => Promise<T>) => Promise<T>;

/**
 * Reads image headers (never pixels) and remembers the answer per source version, so
 * info.json and every tile of an image cost one probe. On first touch it also has a pyramid
 * built for sources that need one, and answers with the pyramid's metadata from then on.
 */
export class MetadataReader {
  private readonly cache: LRUCache<string, Promise<Prepared>>;

  constructor(
    private readonly maxInputPixels: number,
    maxEntries: number,
    private readonly pyramids?: { store: Pyramids; schedule: Schedule },
  ) {
    this.cache = new LRUCache({ max: maxEntries });
  }

  read(source: SourceRef): Promise<Prepared> {
    const key = `${source.identifier}\u0000${source.version}`;
    let pending = this.cache.get(key);
    if (!pending) {
      // Caching the promise makes concurrent first requests share one probe (and one conversion).
      pending = this.prepare(source);
      this.cache.set(key, pending);
      pending.catch(() => this.cache.delete(key));
    }
    return pending;
  }

  private async prepare(source: SourceRef): Promise<Prepared> {
    const input = sourceInput(source);
    // Converting needs the source on disk; an in-memory copy (degraded cache) is read as it is.
    if (!this.pyramids || typeof input !== 'string') return { pyramidPath: undefined, metadata: await probe(input, this.maxInputPixels) };
    const { store, schedule } = this.pyramids;
    // libvips cannot read JPEG 2000 at all: it is only ever served through its pyramid.
    if (await isJpeg2000(input)) return this.fromPyramid(await this.pyramidOrUnavailable(store.pathFor(source, schedule)));
    const metadata = await probe(input, this.maxInputPixels);
    if (!store.wants(metadata)) return { pyramidPath: undefined, metadata };
    try {
      return await this.fromPyramid(await store.pathFor(source, schedule));
    } catch (error) {
      // No room to store a pyramid: serve from the source itself, slower but correct.
      if (error instanceof CacheUnavailableError) return { pyramidPath: undefined, metadata };
      throw error;
    }
  }

  private async fromPyramid(path: string): Promise<Prepared> {
    return { pyramidPath: path, metadata: await probe(path, this.maxInputPixels) };
  }

  private async pyramidOrUnavailable(building: Promise<string>): Promise<string> {
    try {
      return await building;
    } catch (error) {
      if (error instanceof CacheUnavailableError) throw sourceUnavailable('no room to convert this JPEG 2000 image right now; retry later', 30);
      throw error;
    }
  }

  /** Drops every version remembered for an identifier (an operator's purge). */
  forget(identifier: string): void {
    const prefix = `${identifier}\u0000`;
    for (const key of [...this.cache.keys()]) if (key.startsWith(prefix)) this.cache.delete(key);
  }
}

export async function probe(path: string | Buffer, maxInputPixels: number): Promise<ImageMetadata> {
  // Headers only: safe for any declared size, so the limit is checked here with a clear message.
  const meta = await sharp(path, { limitInputPixels: false }).metadata().catch((error: unknown) => {
    throw undecodableSource(`the stored image cannot be read: ${describe(error)}`);
  });
  const { width, height } = meta.autoOrient;
  if (!width || !height) throw undecodableSource('the stored image has no dimensions');
  if (width * height > maxInputPixels) {
    throw sourceTooLarge(
      `the stored image is ${width}×${height} pixels, more than this server decodes (${maxInputPixels})`,
    );
  }
  const autoOrient = (meta.orientation ?? 1) > 1;
  const levels: Level[] = [{ width, height, page: 0 }];
  // Pages of a pyramidal TIFF are reduced copies. Oriented images and other multi-page files
  // (scanned documents, animations) are read from their first page only.
  if (!autoOrient && meta.format === 'tiff' && (meta.pages ?? 1) > 1) {
    for (let page = 1; page < (meta.pages ?? 1); page++) {
      const level = await sharp(path, { page, limitInputPixels: false }).metadata().catch(() => undefined);
      const last = levels[levels.length - 1]!;
      if (!level?.width || !level.height || level.width >= last.width) break;
      if (Math.abs(level.width / width - level.height / height) > 2 / Math.min(level.width, level.height)) break;
      levels.push({ width: level.width, height: level.height, page });
    }
  }
  const onDisk = typeof path === 'string';
  const tiffPages = onDisk && !autoOrient && meta.format === 'tiff' ? await readTiffLayout(path) : undefined;
  return { width, height, levels, autoOrient, tiffPages };
}

export function describe(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.split('\n')[0]!.slice(0, 200);
}
