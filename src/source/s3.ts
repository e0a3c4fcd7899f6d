import { writeFile } from 'node:fs/promises';
import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import { LRUCache } from 'lru-cache';
import type { Counter } from 'prom-client';
import { BlockCache, type ObjectRecord } from '../cache/block-cache.js';
import type { Log } from '../cache/disk-cache.js';
import { CacheUnavailableError } from '../cache/disk-state.js';
import { SingleFlight } from '../cache/single-flight.js';
import type { Config, S3Config } from '../config.js';
import { Memo } from '../cache/memo.js';
import { ConfigError, IiifError, notFound, overloaded, sourceUnavailable } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { InputVanished } from '../image/vanished.js';
import { BlockReads, type RemoteObject } from './block-reads.js';
import { checkIdentifier, isServable, printable } from './identifier.js';
import { classify, NotModified } from './s3-failures.js';
import { S3Requests, type S3Location } from './s3-requests.js';
import type { ImageFile, ImageSource, SourceRef } from './source.js';
import { TokenBucket } from './token-bucket.js';

/** What is remembered of a key's current version, on disk beside its blocks. */
interface S3Record {
  size: number;
  lastModified: string;
  /** When S3 last confirmed this version (ms since epoch). */
  checkedAt: number;
}

/** One version of an object read by range, and where S3 keeps it. */
interface S3Object extends RemoteObject {
  at: S3Location;
}

/** An object of the store that is not a source (a derivative pyramid): exactly this version. */
export interface StoredObject {
  bucket: string;
  key: string;
  etag: string;
  size: number;
}

// Block-cache keys of stored objects start with NUL, which no identifier may hold (checkIdentifier).
const STORED_OBJECT = '\u0000stored:';

/** The largest request made of adjacent missing blocks: about as long to transfer as a request takes to start. */
const MAX_FETCH_BYTES = 2 * 1024 * 1024;
/** Blocks kept in memory as well, so a directory read entry by entry, or a hot block, costs no disk read. */
const MEMORY_BYTES = 32 * 1024 * 1024;

/**
 * Images from an S3 bucket (or an S3-compatible store), read by range. Resolving an identifier
 * costs one ranged GET of the object's first block, which also tells its version (ETag), size
 * and date; format readers then read what they need — a TIFF's directories, the stored tiles
 * a request covers — in blocks through a bounded disk cache (block-cache.ts), every read
 * pinned to that version. Formats that must be decoded whole are fetched whole, once, into the
 * same cache.
 *
 * The version is trusted for the revalidation interval; then a conditional GET asks whether it
 * changed. When a read finds the object changed (If-Match fails), that request fails with 503
 * and the key is resolved again, so the next request reads the new version: bytes of two
 * versions are never mixed. Concurrent resolutions of an identifier share one request; every
 * request has a deadline and bounded, jittered retries. "No such key" is remembered for a short
 * time. When S3 fails while a version is merely due for revalidation, it is served on
 * (stale-if-error). When the disk cache cannot be written, blocks are served from memory and
 * whole objects up to a size limit are fetched into memory.
 */
export class S3Source implements ImageSource {
  private readonly flights = new SingleFlight<SourceRef>();
  private readonly wholes = new SingleFlight<string | Buffer>();
  private readonly blocks: BlockReads<S3Object>;
  private readonly missing: LRUCache<string, IiifError> | undefined;
  /** Fetches of keys with no known version: a probe of made-up identifiers is one GET each. */
  private readonly misses: TokenBucket;
  private readonly missRejections: Counter;
  /** Listings for the viewer's index page: one LIST call per page of 1,000 keys, each billed. */
  private readonly listings: Memo<string[]>;
  private readonly negativeHits: Counter;
  private readonly staleServed: Counter;

  private constructor(
    private readonly config: S3Config,
    /** Also the derivative store's (one S3 client per process). */
    readonly requests: S3Requests,
    private readonly cache: BlockCache<S3Record>,
    metrics: Metrics,
    private readonly log: Log,
    /** The derivative store's key prefix when it shares the source bucket: those objects are no images to list. */
    private readonly derivativeKeys: string | undefined,
  ) {
    if (config.negativeTtlSeconds > 0) {
      this.missing = new LRUCache({ max: config.negativeCacheEntries, ttl: config.negativeTtlSeconds * 1000 });
    }
    this.blocks = new BlockReads(cache as BlockCache<unknown>, (object, start, end) => this.fetchRange(object, start, end), {
      blockBytes: config.blockBytes,
      maxFetchBytes: MAX_FETCH_BYTES,
      memoryBytes: MEMORY_BYTES,
    });
    this.negativeHits = metrics.counter('iiif_source_negative_cache_hits_total', 'Lookups answered 404 from the memory of recently missing keys.');
    this.staleServed = metrics.counter('iiif_source_stale_served_total', 'Versions served past revalidation because S3 failed.');
    this.misses = new TokenBucket(config.missRate, config.missBurst);
    this.missRejections = metrics.counter('iiif_source_miss_rejections_total', 'Requests answered 503 because too many uncached images were being fetched (IIIF_S3_MISS_RATE).');
    this.listings = new Memo({ max: 4, ttlMs: config.listTtlSeconds * 1000, keep: () => config.listTtlSeconds > 0 });
  }

  /** One S3 client and one disk cache per process; the client's first-call costs are paid here, before the server listens. */
  static async open(config: Config, metrics: Metrics, log: Log): Promise<S3Source> {
    const s3 = config.s3;
    if (!s3) throw new ConfigError(['IIIF_SOURCE=s3 needs the S3 settings']);
    const requests = new S3Requests(s3, S3Requests.client(s3), metrics, log);
    const [cache] = await Promise.all([BlockCache.open<S3Record>({ ...config.cache, metrics, log }), requests.warmUp()]);
    const derivatives = config.derivatives?.bucket === s3.bucket ? config.derivatives.prefix : undefined;
    return new S3Source(s3, requests, cache, metrics, log, derivatives);
  }

  async resolve(identifier: string): Promise<SourceRef> {
    checkIdentifier(identifier);
    // The fleet's derivatives, leases and markers share the bucket but are no images: never
    // served, probed or listed as sources (a 404 without asking S3).
    if (this.derivativeKeys && this.key(identifier).startsWith(this.derivativeKeys)) {
      throw notFound(`no image with identifier "${printable(identifier)}"`);
    }
    const known = this.missing?.get(identifier);
    if (known) {
      this.negativeHits.inc();
      throw known;
    }
    const current = this.cache.record(identifier);
    if (current && this.isFresh(current)) return this.refFor(identifier, current);
    if (!current && !this.flights.has(identifier) && !this.misses.take()) {
      this.missRejections.inc();
      throw overloaded('the server is fetching too many images it has not seen yet; retry shortly', this.misses.secondsToNext);
    }
    return this.flights.run(identifier, () => this.fetchVersion(identifier));
  }

  /** Drops the cached blocks, object and record and any remembered 404; true when something was cached. */
  async purge(identifier: string): Promise<boolean> {
    this.missing?.delete(identifier);
    this.blocks.forget(this.cache.keyFolder(identifier));
    return this.cache.dropKey(identifier);
  }

  /** Finishes the cache writes under way (the server is stopping). */
  close(): Promise<void> {
    return this.cache.settle();
  }

  /**
   * Another object of the store (a derivative pyramid made from a source), read by range
   * through the same block cache and pinned to its ETag, exactly as a source is.
   */
  fileOf(stored: StoredObject): ImageFile {
    const object = this.cache.object(`${STORED_OBJECT}${stored.bucket}/${stored.key}`, stored.etag);
    return this.fileFor({ ...object, size: stored.size, at: { bucket: stored.bucket, key: stored.key } });
  }

  /** Reused for IIIF_S3_LIST_TTL_SECONDS; concurrent callers share one listing. */
  list(limit: number): Promise<string[]> {
    return this.listings.get(String(limit), () => this.listAll(limit));
  }

  private async listAll(limit: number): Promise<string[]> {
    const identifiers: string[] = [];
    let token: string | undefined;
    const signal = AbortSignal.timeout(this.config.deadlineMs);
    do {
      const page = await this.requests.client
        .send(
          new ListObjectsV2Command({
            Bucket: this.config.bucket,
            Prefix: this.config.prefix || undefined,
            // Full pages: some keys may not be servable identifiers, and a page costs the same.
            MaxKeys: 1000,
            ContinuationToken: token,
          }),
          { abortSignal: signal },
        )
        .catch((error: unknown) => {
          throw this.requests.failure(error, 'listing the bucket');
        });
      for (const object of page.Contents ?? []) {
        if (this.derivativeKeys && object.Key?.startsWith(this.derivativeKeys)) continue;
        const identifier = object.Key?.slice(this.config.prefix.length);
        if (identifier && isServable(identifier) && identifiers.length < limit) identifiers.push(identifier);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token && identifiers.length < limit);
    return identifiers;
  }

  private isFresh(current: ObjectRecord<S3Record>): boolean {
    return Date.now() - current.record.checkedAt < this.config.revalidateSeconds * 1000;
  }

  private refFor(identifier: string, { version, record }: ObjectRecord<S3Record>): SourceRef {
    const object = this.cache.object(identifier, version);
    return { identifier, version, lastModified: new Date(record.lastModified), file: this.fileFor({ ...object, size: record.size, at: { key: this.key(identifier) } }) };
  }

  private fileFor(object: S3Object): ImageFile {
    return {
      reader: this.blocks.reader(object),
      whole: () => this.wholes.run(object.folder, () => this.whole(object)),
      onDisk: false,
      readAhead: (offset, length) => this.blocks.readAhead(object, offset, length),
      preload: (pieces) => this.blocks.preload(object, pieces),
    };
  }

  /** Runs once per identifier at a time (single-flight): a miss, or a version due for revalidation. */
  private async fetchVersion(identifier: string): Promise<SourceRef> {
    const known = this.cache.record(identifier);
    if (known && this.isFresh(known)) return this.refFor(identifier, known);
    const deadline = AbortSignal.timeout(this.config.deadlineMs);
    try {
      return await this.requests.withRetries(deadline, () => this.fetchFirstBlock(identifier, known, deadline));
    } catch (error) {
      const { result } = classify(error);
      if (result === 'not_found' || result === 'denied') {
        this.blocks.forget(this.cache.keyFolder(identifier));
        await this.cache.dropKey(identifier);
        const missing = notFound(`no image with identifier "${printable(identifier)}"`);
        this.missing?.set(identifier, missing);
        if (result === 'denied') this.log.warn({ identifier: printable(identifier) }, 'S3 denied access to a source object; answered 404');
        throw missing;
      }
      if (known && !(error instanceof IiifError)) {
        // S3 is failing but we know a version: serving it beats an error, and it is revalidated again next time.
        this.staleServed.inc();
        this.log.warn({ err: error, identifier: printable(identifier) }, 'S3 failed during revalidation; serving the known version');
        return this.refFor(identifier, known);
      }
      throw this.requests.failure(error, `fetching "${printable(identifier)}"`, deadline);
    }
  }

  /** One attempt: the first block, which tells the version (or a 304: the known version is still current). */
  private async fetchFirstBlock(identifier: string, known: ObjectRecord<S3Record> | undefined, deadline: AbortSignal): Promise<SourceRef> {
    try {
      const { version, bytes } = await this.requests.first(this.key(identifier), known?.version, this.config.blockBytes, deadline);
      const current = { version: version.etag, record: { size: version.size, lastModified: version.lastModified.toISOString(), checkedAt: Date.now() } };
      const object = this.cache.object(identifier, current.version);
      this.cache.setRecord(object, current.record);
      if (bytes.length > 0) this.blocks.keep({ ...object, size: version.size, at: { key: this.key(identifier) } }, 0, bytes);
      return this.refFor(identifier, current);
    } catch (error) {
      if (!(error instanceof NotModified) || !known) throw error;
      const confirmed = { version: known.version, record: { ...known.record, checkedAt: Date.now() } };
      this.cache.setRecord(this.cache.object(identifier, known.version), confirmed.record);
      return this.refFor(identifier, confirmed);
    }
  }

  /** Bytes of one version for the block reads; a version S3 no longer holds fails the request and is resolved again. */
  private async fetchRange(object: S3Object, start: number, end: number): Promise<Buffer> {
    const deadline = AbortSignal.timeout(this.config.deadlineMs);
    try {
      return await this.requests.withRetries(deadline, () => this.requests.range(object.at, object.version, start, end, deadline));
    } catch (error) {
      throw await this.readFailure(error, object, deadline);
    }
  }

  /**
   * The whole object for decoders that need it: from the cache, from blocks already at hand
   * (a small object is its first block), or one GET into the cache — or into memory, bounded,
   * when the cache folder cannot take it.
   */
  private async whole(object: S3Object): Promise<string | Buffer> {
    const cached = await this.cache.wholePath(object, object.size);
    if (cached) return cached;
    const deadline = AbortSignal.timeout(this.config.deadlineMs);
    try {
      if (this.blocks.hasAll(object)) {
        const bytes = await this.blocks.read(object, 0, object.size);
        return await this.cache.putWhole(object, object.size, (temp) => writeFile(temp, bytes)).catch((error: unknown) => {
          if (error instanceof CacheUnavailableError) return bytes;
          throw error;
        });
      }
      return await this.requests.withRetries(deadline, () => this.wholeOnce(object, deadline));
    } catch (error) {
      throw await this.readFailure(error, object, deadline);
    }
  }

  private async wholeOnce(object: S3Object, deadline: AbortSignal): Promise<string | Buffer> {
    try {
      return await this.cache.putWhole(object, object.size, (temp) => this.requests.wholeToFile(object.at, object.version, object.size, temp, deadline));
    } catch (error) {
      if (!(error instanceof CacheUnavailableError)) throw error;
    }
    // The degraded path: the object in memory, bounded, served for this request only.
    if (object.size > this.config.memoryFallbackMaxBytes) {
      throw sourceUnavailable(`the image is too large to serve while the disk cache is unavailable (${object.size} bytes)`, this.config.retryAfterSeconds);
    }
    return this.requests.wholeToMemory(object.at, object.version, object.size, deadline);
  }

  /** The client's error for a failed read; when the object changed, its key is resolved again in the background. */
  private async readFailure(error: unknown, object: S3Object, deadline: AbortSignal): Promise<Error> {
    const { result } = classify(error);
    const stored = object.at.bucket !== undefined;
    // A stored object (a derivative) replaced or deleted under us: whoever chose it chooses again.
    if (stored && (result === 'changed' || result === 'not_found')) return new InputVanished({ cause: error });
    if (result === 'changed' && this.cache.record(object.key)?.version === object.version) {
      await this.cache.forgetRecord(object.key);
      void this.resolve(object.key).catch(() => undefined);
    }
    return this.requests.failure(error, `reading "${printable(stored ? object.at.key : object.key)}"`, deadline);
  }

  private key(identifier: string): string {
    return this.config.prefix + identifier;
  }
}
