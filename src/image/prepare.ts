import { CacheUnavailableError } from '../cache/disk-state.js';
import { identifierPrefix, versionKey } from '../cache/keys.js';
import { Memo } from '../cache/memo.js';
import { formatUnavailable, IiifError } from '../errors.js';
import { head } from '../source/range-reader.js';
import type { LocalFiles } from '../source/local-files.js';
import type { ImageFile, SourceRef } from '../source/source.js';
import { jp2Available } from './jp2/decoder.js';
import { isJpeg2000, JPEG2000_SIGNATURE_BYTES, readJp2Metadata } from './jp2/source.js';
import { probe } from './metadata/probe.js';
import type { ImageMetadata } from './metadata/types.js';
import type { SharedPyramids } from './pyramid/shared.js';
import type { BuiltPyramid, Pyramids } from './pyramid/store.js';

/** What renders read for a source version: its own file, or the pyramid made from it. */
export interface Prepared {
  /** The source's file, or its pyramid's when one was built. */
  input: ImageFile;
  metadata: ImageMetadata;
  /** The source read while another container converts its pyramid: not remembered, the next request asks again. */
  interim?: boolean;
}

/** Statuses that the same source version will always get again. */
const PERMANENT_REFUSALS = new Set([413, 422]);

/** Runs expensive work (a pyramid conversion) through admission control. */
export type Schedule = <T>(work: () => Promise<T>) => Promise<T>;

export interface PreparationOptions {
  maxInputPixels: number;
  /** Most scans a JPEG may have (see metadata/jpeg-scans.ts). */
  maxJpegScans: number;
  /** How many source versions to remember. */
  maxEntries: number;
  /** Where pyramids made on first touch go, and how their conversions are scheduled; none: read every source as it is. */
  pyramids: { store: Pyramids; schedule: Schedule; shared?: SharedPyramids | undefined } | undefined;
  /** Reads the pyramid files (kept open between tile reads). */
  files: LocalFiles;
}

/**
 * Decides, once per source version, what renders read: the source itself (after probing its
 * headers), or a pyramid built from it on first touch for sources that need one. Concurrent
 * first requests share one probe and one conversion; the answer is remembered.
 */
export class Preparation {
  /** A refusal is remembered like an answer: see get(). */
  private readonly memo: Memo<Prepared | { refused: IiifError }>;

  constructor(private readonly options: PreparationOptions) {
    this.memo = new Memo({ max: options.maxEntries, keep: (outcome) => !('interim' in outcome && outcome.interim) });
  }

  /**
   * What renders read for this source version. A version refused for good (413: too many
   * pixels, 422: not decodable, too many JPEG scans) stays refused without being probed again:
   * the same bytes give the same answer, and a client asking for the tiles of a crafted file
   * over and over must cost a lookup, not a read of the file each time.
   */
  async get(source: SourceRef): Promise<Prepared> {
    const outcome = await this.memo.get(versionKey(source.identifier, source.version), () =>
      this.prepare(source).catch((error: unknown) => {
        if (error instanceof IiifError && PERMANENT_REFUSALS.has(error.statusCode)) return { refused: error };
        throw error;
      }),
    );
    if ('refused' in outcome) throw outcome.refused;
    return outcome;
  }

  /** Drops every version remembered for an identifier (a file that vanished under us). */
  forget(identifier: string): void {
    this.memo.forgetPrefix(identifierPrefix(identifier));
  }

  /** Forgets an identifier and deletes its pyramid (an operator's purge). */
  async purge(identifier: string): Promise<void> {
    this.forget(identifier);
    await this.options.pyramids?.store.forget(identifier);
    await this.options.pyramids?.shared?.purge(identifier);
  }

  private async prepare(source: SourceRef): Promise<Prepared> {
    const { maxInputPixels, maxJpegScans, pyramids } = this.options;
    const file = source.file;
    // JPEG 2000 (which libvips cannot read) is decoded natively, each request at the
    // resolution and region it needs: its header is all there is to prepare.
    if (isJpeg2000(await head(file.reader, JPEG2000_SIGNATURE_BYTES))) {
      if (!jp2Available()) throw formatUnavailable('this server cannot decode JPEG 2000 images: its native OpenJPEG decoder is not installed');
      return { input: file, metadata: await readJp2Metadata(file.reader, maxInputPixels) };
    }
    if (!pyramids) return { input: file, metadata: await probe(file, maxInputPixels, maxJpegScans) };
    const { store, schedule, shared } = pyramids;
    const metadata = await probe(file, maxInputPixels, maxJpegScans);
    if (!store.wants(metadata)) return { input: file, metadata };
    try {
      if (!shared) return await this.fromPyramid(source, await store.pyramidFor(source, schedule));
      const pyramid = await shared.pyramidFor(source, metadata, schedule);
      return pyramid ? await this.fromPyramid(source, pyramid) : { input: file, metadata, interim: true };
    } catch (error) {
      // No room to store a pyramid: serve from the source itself, slower but correct.
      if (error instanceof CacheUnavailableError) return { input: file, metadata };
      throw error;
    }
  }

  /** A pyramid on local disk, or one read by range from the fleet's store. */
  private async fromPyramid(source: SourceRef, pyramid: BuiltPyramid | ImageFile): Promise<Prepared> {
    const input = 'reader' in pyramid ? pyramid : this.options.files.file(pyramid.path, pyramid.size, source.version);
    return { input, metadata: await probe(input, this.options.maxInputPixels) };
  }
}
