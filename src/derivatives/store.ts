import { stat } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { PRECONDITION_FAILED, type Bucket, type FileBody, type ObjectHead, type ObjectWithBody, type PutOptions } from './bucket.js';
import type { Piece } from '../source/source.js';
import { carriedPieces, directorySpans, formatSpans, MAX_CARRIED_BYTES, parseSpans, piecesOf, spanBytes, type ByteSpan } from './directories.js';
import { DerivativeStoreError, LeaseLostError } from './errors.js';
import { FILES, parseKey, sourceDir, unquote, versionDir, versionHash, versionKeys, type VersionKeys } from './keys.js';

/** A complete derivative: a pyramid and its image information, made from one source version. */
export interface Derivative {
  sourceKey: string;
  /** The source version (ETag, unquoted) it was made from. */
  etag: string;
  bucket: string;
  /** The pyramidal TIFF. Read it by range pinned to `pyramidEtag` (If-Match) and within `pyramidSize`. */
  pyramidKey: string;
  pyramidSize: number;
  pyramidEtag: string;
  /** The image information stored beside it (see readInfo). */
  infoKey: string;
  infoEtag: string;
  /** Where the pyramid's directories lie (directories.ts): fetched at once when it is opened. Empty when not recorded. */
  directories: ByteSpan[];
  /** Their bytes, carried by the marker (directories.ts, carriedPieces): empty when it carried none or they do not add up, or were not asked for. */
  carried: Piece[];
}

/** What a converter made locally and hands to upload. */
export interface DerivativeFiles {
  /** The pyramidal TIFF on local disk. */
  pyramidPath: string;
  /** What info.json is built from (any JSON value), stored beside the pyramid. */
  info: unknown;
}

/** One source version's objects in the store, complete or not. */
export interface DerivativeVersion {
  sourceKey: string;
  /** versionHash of the source ETag it was made from. */
  hash: string;
  /** The key prefix of its objects, ending in `/`. */
  dir: string;
  /** The completion marker is there: the version is served. */
  complete: boolean;
  /** A lease object is there: a conversion under way, or one that crashed. */
  leased: boolean;
  keys: string[];
  bytes: number;
  /** When its newest object was written. */
  lastModified: Date;
}

export type PruneReason = 'source-changed' | 'source-deleted' | 'incomplete';

export interface PruneOptions {
  /** Only derivatives of sources whose keys start with this. */
  sourcePrefix?: string;
  /** Report what would be deleted, delete nothing. */
  dryRun?: boolean;
  /** An incomplete version of the current source untouched for this long is a crashed converter's leftover (use the lease duration). */
  staleAfterMs: number;
}

export interface PruneReport {
  pruned: Array<{ version: DerivativeVersion; reason: PruneReason }>;
  /** Versions kept: complete or in progress, of the current source. */
  kept: number;
  /** Sources whose current version could not be asked for (S3 refused or failed): nothing of theirs was deleted. */
  unchecked: Array<{ sourceKey: string; reason: string }>;
}

// Sources asked for their current ETag at once while pruning.
const PRUNE_CONCURRENCY = 8;

/**
 * The fleet's derivative store in S3: per source version, `{prefix}{source key}/{hash}/`
 * holds `pyramid.tif`, `info.json` beside it and, written last, `complete`.
 *
 * Publishing: the pyramid is one PUT (atomic on S3: the object appears whole or not at all; up
 * to 5 GiB, more than any pyramid within IIIF_MAX_INPUT_PIXELS needs) with Content-MD5, then a
 * HEAD verifies the stored size and ETag; then info.json; then, after the caller's last check
 * (the lease is still ours), the `complete` marker, whose metadata records the source ETag, the
 * pyramid's and info's ETags and size and where the pyramid's directories lie, and whose body
 * is those directories' bytes (with their CRC-32 in the metadata), so that a reader opens the
 * derivative with the request that finds it. Only the marker makes a version visible, so a
 * converter killed mid-upload, a store that writes in place (s3rver) or a failed write never
 * shows a half-written derivative; and since readers pin the recorded ETags, a pyramid replaced
 * after publishing is never mixed with another's information.
 */
export class DerivativeStore {
  constructor(
    private readonly bucket: Bucket,
    readonly prefix: string,
    /** The source bucket, asked for current ETags when pruning. */
    private readonly sources: Bucket,
  ) {}

  get bucketName(): string {
    return this.bucket.name;
  }

  keys(sourceKey: string, etag: string): VersionKeys {
    return versionKeys(this.prefix, sourceKey, etag);
  }

  /** The complete derivative of this source version, or undefined (none, half-written, or of another version). */
  async find(sourceKey: string, etag: string, { withDirectories = true } = {}): Promise<Derivative | undefined> {
    const keys = this.keys(sourceKey, etag);
    // Both at once: one round trip before a container can read the derivative, not two; the
    // marker brings the pyramid's directories with it (a HEAD when only existence matters).
    const marker = withDirectories ? this.bucket.get(keys.complete, MAX_CARRIED_BYTES) : this.bucket.head(keys.complete).then((head) => head && { ...head, body: undefined });
    const [found, pyramid] = await Promise.all([marker, this.bucket.head(keys.pyramid)]);
    return found && this.complete(sourceKey, etag, keys, found, pyramid);
  }

  /** The derivative a marker and the pyramid's head describe, when they agree with each other and with the source version. */
  private complete(sourceKey: string, etag: string, keys: VersionKeys, marker: ObjectWithBody, pyramid: ObjectHead | undefined): Derivative | undefined {
    const recorded = marker.metadata;
    const pyramidSize = Number(recorded['pyramid-size']);
    if (recorded['source-etag'] !== unquote(etag) || !recorded['pyramid-etag'] || !recorded['info-etag'] || !Number.isSafeInteger(pyramidSize)) return undefined;
    // A pyramid replaced after the marker (a converter racing an expired lease) is not the one published.
    if (pyramid?.etag !== recorded['pyramid-etag'] || pyramid.size !== pyramidSize) return undefined;
    const directories = parseSpans(recorded.directories, pyramidSize);
    return {
      sourceKey,
      etag: unquote(etag),
      bucket: this.bucket.name,
      pyramidKey: keys.pyramid,
      pyramidSize,
      pyramidEtag: pyramid.etag,
      infoKey: keys.info,
      infoEtag: recorded['info-etag'],
      directories,
      carried: carriedPieces(directories, marker.body, recorded['directories-crc32']),
    };
  }

  /** The image information stored with a derivative, exactly the version its marker names. */
  async readInfo(derivative: Derivative): Promise<unknown> {
    const object = await this.bucket.getText(derivative.infoKey);
    if (object?.etag !== derivative.infoEtag) throw new DerivativeStoreError(`derivative store: ${derivative.infoKey} changed or vanished since it was found`);
    try {
      return JSON.parse(object.text) as unknown;
    } catch {
      throw new DerivativeStoreError(`derivative store: ${derivative.infoKey} is not JSON`);
    }
  }

  /**
   * Publishes a derivative: pyramid, information, then the marker. `beforePublish` runs just
   * before the marker is written (the converter confirms its lease there; it throws to stop).
   * On failure nothing is published and what was written is deleted again, unless the lease
   * was lost: then the new holder's objects are left alone.
   */
  async upload(sourceKey: string, etag: string, files: DerivativeFiles, beforePublish: () => Promise<void> = async () => undefined): Promise<Derivative> {
    const keys = this.keys(sourceKey, etag);
    const pyramid: FileBody = { path: files.pyramidPath, size: (await stat(files.pyramidPath)).size };
    const directories = await directorySpans(files.pyramidPath);
    const carried = await spanBytes(files.pyramidPath, directories);
    const carriedCrc = carried && String(crc32(carried));
    try {
      const pyramidEtag = await this.write(keys.pyramid, pyramid, { contentType: 'image/tiff' });
      const stored = await this.bucket.head(keys.pyramid);
      if (stored?.size !== pyramid.size || stored.etag !== pyramidEtag) {
        throw new DerivativeStoreError(`derivative store: ${keys.pyramid} does not hold what was uploaded`);
      }
      const infoEtag = await this.write(keys.info, Buffer.from(JSON.stringify(files.info)), { contentType: 'application/json' });
      await beforePublish();
      const derivative: Derivative = {
        sourceKey,
        etag: unquote(etag),
        bucket: this.bucket.name,
        pyramidKey: keys.pyramid,
        pyramidSize: pyramid.size,
        pyramidEtag,
        infoKey: keys.info,
        infoEtag,
        directories,
        carried: carried ? piecesOf(directories, carried) : [],
      };
      const metadata = {
        'source-etag': derivative.etag,
        'pyramid-size': String(pyramid.size),
        'pyramid-etag': pyramidEtag,
        'info-etag': infoEtag,
        ...(directories.length > 0 ? { directories: formatSpans(directories) } : {}),
        ...(carriedCrc ? { 'directories-crc32': carriedCrc } : {}),
      };
      // The body is the directories' bytes (none when they are too many): see find().
      await this.write(keys.complete, carried ?? Buffer.alloc(0), { contentType: 'application/octet-stream', metadata });
      return derivative;
    } catch (error) {
      if (!(error instanceof LeaseLostError)) await this.discard(keys, beforePublish);
      throw error;
    }
  }

  /** Every version stored for one source, complete or not, oldest write first. */
  async listVersions(sourceKey: string): Promise<DerivativeVersion[]> {
    const versions = (await this.collect(sourceDir(this.prefix, sourceKey))).get(sourceKey) ?? [];
    return versions.sort((a, b) => a.lastModified.getTime() - b.lastModified.getTime());
  }

  /**
   * Deletes derivatives no source version needs any more: those of a source whose ETag has
   * changed or which is gone, and incomplete leftovers of crashed converters. A source that
   * cannot be asked (S3 refused or failed) keeps everything.
   */
  async prune(options: PruneOptions): Promise<PruneReport> {
    const bySource = await this.collect(this.prefix + (options.sourcePrefix ?? ''));
    const report: PruneReport = { pruned: [], kept: 0, unchecked: [] };
    const now = Date.now();
    const sources = [...bySource.keys()].sort();
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < sources.length) {
        const sourceKey = sources[next++]!;
        let current: string | undefined;
        try {
          const head = await this.sources.head(sourceKey);
          current = head && versionHash(head.etag);
        } catch (error) {
          report.unchecked.push({ sourceKey, reason: error instanceof Error ? error.message : String(error) });
          continue;
        }
        for (const version of bySource.get(sourceKey)!) {
          const reason: PruneReason | undefined =
            current === undefined ? 'source-deleted'
            : version.hash !== current ? 'source-changed'
            : !version.complete && now - version.lastModified.getTime() > options.staleAfterMs ? 'incomplete'
            : undefined;
          if (reason) report.pruned.push({ version, reason });
          else report.kept++;
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(PRUNE_CONCURRENCY, sources.length) }, worker));
    report.pruned.sort((a, b) => a.version.sourceKey.localeCompare(b.version.sourceKey) || a.version.hash.localeCompare(b.version.hash));
    report.unchecked.sort((a, b) => a.sourceKey.localeCompare(b.sourceKey));
    if (!options.dryRun) await this.bucket.delete(report.pruned.flatMap(({ version }) => version.keys));
    return report;
  }

  /** Deletes every version of one source's derivatives (an operator's purge); returns what was deleted. */
  async purge(sourceKey: string): Promise<DerivativeVersion[]> {
    const versions = await this.listVersions(sourceKey);
    await this.bucket.delete(versions.flatMap((version) => version.keys));
    return versions;
  }

  private async write(key: string, body: Buffer | FileBody, options: PutOptions): Promise<string> {
    const etag = await this.bucket.put(key, body, options);
    // Unconditional writes cannot fail a precondition; a store that says so is misbehaving.
    if (etag === PRECONDITION_FAILED) throw new DerivativeStoreError(`derivative store: PUT ${key} answered 412 without a condition`);
    return etag;
  }

  /** Best effort: removes an unpublished version's objects while its lease is still ours; prune removes any leftover. */
  private async discard(keys: VersionKeys, stillOurs: () => Promise<void>): Promise<void> {
    try {
      await stillOurs();
      await this.bucket.delete([keys.complete, keys.info, keys.pyramid]);
    } catch {
      // The failure being reported matters more than this cleanup.
    }
  }

  /** Versions under a key prefix, grouped by source key. */
  private async collect(listPrefix: string): Promise<Map<string, DerivativeVersion[]>> {
    const versions = new Map<string, DerivativeVersion>();
    for await (const object of this.bucket.list(listPrefix)) {
      const parsed = parseKey(this.prefix, object.key);
      if (!parsed) continue;
      const id = `${parsed.sourceKey}\u0000${parsed.hash}`;
      let version = versions.get(id);
      if (!version) {
        const dir = versionDir(this.prefix, parsed.sourceKey, parsed.hash);
        version = { sourceKey: parsed.sourceKey, hash: parsed.hash, dir, complete: false, leased: false, keys: [], bytes: 0, lastModified: object.lastModified };
        versions.set(id, version);
      }
      version.keys.push(object.key);
      version.bytes += object.size;
      if (object.lastModified > version.lastModified) version.lastModified = object.lastModified;
      if (parsed.file === FILES.complete) version.complete = true;
      if (parsed.file === FILES.lease) version.leased = true;
    }
    const bySource = new Map<string, DerivativeVersion[]>();
    for (const version of versions.values()) {
      const list = bySource.get(version.sourceKey);
      if (list) list.push(version);
      else bySource.set(version.sourceKey, [version]);
    }
    return bySource;
  }
}
