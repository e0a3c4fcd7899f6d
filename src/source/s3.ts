import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, ListObjectsV2Command, S3Client, type GetObjectCommandOutput } from '@aws-sdk/client-s3';
import { LRUCache } from 'lru-cache';
import type { Counter, Histogram } from 'prom-client';
import { CacheUnavailableError, DiskCache, type CachedFile, type Log } from '../cache/disk-cache.js';
import { SingleFlight } from '../cache/single-flight.js';
import type { Config, S3Config } from '../config.js';
import { Memo } from '../cache/memo.js';
import { badGateway, ConfigError, IiifError, notFound, overloaded, sourceUnavailable } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { checkIdentifier, printable } from './identifier.js';
import { classify, FETCH_RESULTS, IncompleteBody, NotModified, type FetchResult } from './s3-failures.js';
import type { ImageSource, SourceRef } from './source.js';
import { TokenBucket } from './token-bucket.js';

/** Kept beside each cached object, so a restart knows what it holds and when it last asked S3. */
interface ObjectMeta {
  etag: string;
  lastModified: string;
  /** When S3 last confirmed this ETag (ms since epoch). */
  checkedAt: number;
}

// Backoff between attempts: exponential from 100 ms, capped at 2 s, with full jitter so many
// containers retrying together do not hit S3 in lockstep.
const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 2_000;

/**
 * Images from an S3 bucket (or an S3-compatible store), kept as local files in a bounded disk
 * cache: each object is fetched once per container and served from disk until the revalidation
 * interval has passed, when a conditional GET (If-None-Match) asks whether it changed.
 *
 * Concurrent misses for one identifier share one fetch (single-flight). Each fetch has a
 * deadline and a bounded number of attempts with jittered backoff. "No such key" is remembered
 * for a short time so a missing image does not hammer S3. When S3 fails while a cached copy is
 * merely due for revalidation, the cached copy is served (stale-if-error). When the disk cache
 * cannot be written, objects up to a size limit are fetched into memory instead.
 */
export class S3Source implements ImageSource {
  private readonly flights = new SingleFlight<SourceRef>();
  private readonly missing: LRUCache<string, IiifError> | undefined;
  /** Fetches of objects not on disk: a probe of made-up identifiers is one GET each. */
  private readonly misses: TokenBucket;
  private readonly missRejections: Counter;
  /** Listings for the viewer's index page: one LIST call per page of 1,000 keys, each billed. */
  private readonly listings: Memo<string[]>;
  private readonly fetches: Counter<'result'>;
  private readonly fetchSeconds: Histogram;
  private readonly negativeHits: Counter;
  private readonly staleServed: Counter;

  private constructor(
    private readonly config: S3Config,
    private readonly client: S3Client,
    private readonly cache: DiskCache<ObjectMeta>,
    metrics: Metrics,
    private readonly log: Log,
  ) {
    if (config.negativeTtlSeconds > 0) {
      this.missing = new LRUCache({ max: config.negativeCacheEntries, ttl: config.negativeTtlSeconds * 1000 });
    }
    this.fetches = metrics.counter('iiif_source_fetch_total', 'Requests to S3 for source objects, by outcome.', ['result']);
    for (const result of FETCH_RESULTS) this.fetches.inc({ result }, 0);
    this.fetchSeconds = metrics.histogram('iiif_source_fetch_seconds', 'Time per S3 request for a source object, body included.');
    this.negativeHits = metrics.counter('iiif_source_negative_cache_hits_total', 'Lookups answered 404 from the memory of recently missing keys.');
    this.staleServed = metrics.counter('iiif_source_stale_served_total', 'Cached objects served past revalidation because S3 failed.');
    this.misses = new TokenBucket(config.missRate, config.missBurst);
    this.missRejections = metrics.counter('iiif_source_miss_rejections_total', 'Requests answered 503 because too many uncached images were being fetched (IIIF_S3_MISS_RATE).');
    this.listings = new Memo({ max: 4, ttlMs: config.listTtlSeconds * 1000, keep: () => config.listTtlSeconds > 0 });
  }

  /** One S3 client and one disk cache per process. */
  static async open(config: Config, metrics: Metrics, log: Log): Promise<S3Source> {
    const s3 = config.s3;
    if (!s3) throw new ConfigError(['IIIF_SOURCE=s3 needs the S3 settings']);
    const client = new S3Client({
      ...(s3.region ? { region: s3.region } : {}),
      ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
      forcePathStyle: s3.forcePathStyle,
      // Retries are ours (below), so attempts, backoff and the deadline are counted in one place.
      maxAttempts: 1,
      requestHandler: { connectionTimeout: s3.timeoutMs, socketTimeout: s3.timeoutMs },
    });
    const cache = await DiskCache.open<ObjectMeta>({ ...config.cache, name: 'source', metrics, log });
    return new S3Source(s3, client, cache, metrics, log);
  }

  async resolve(identifier: string): Promise<SourceRef> {
    checkIdentifier(identifier);
    const known = this.missing?.get(identifier);
    if (known) {
      this.negativeHits.inc();
      throw known;
    }
    const cached = this.cache.get(identifier);
    if (cached && this.isFresh(cached)) return this.refFor(identifier, cached);
    if (!cached && !this.flights.has(identifier) && !this.misses.take()) {
      this.missRejections.inc();
      throw overloaded('the server is fetching too many images it has not seen yet; retry shortly', this.misses.secondsToNext);
    }
    return this.flights.run(identifier, () => this.fetch(identifier));
  }

  /** Drops the cached object and any remembered 404; true when something was cached. */
  async purge(identifier: string): Promise<boolean> {
    this.missing?.delete(identifier);
    return this.cache.remove(identifier);
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
      const page = await this.client
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
          throw this.failure(error, 'listing the bucket');
        });
      for (const object of page.Contents ?? []) {
        const identifier = object.Key?.slice(this.config.prefix.length);
        if (identifier && isServable(identifier) && identifiers.length < limit) identifiers.push(identifier);
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token && identifiers.length < limit);
    return identifiers;
  }

  private isFresh(cached: CachedFile<ObjectMeta>): boolean {
    return Date.now() - cached.meta.checkedAt < this.config.revalidateSeconds * 1000;
  }

  private refFor(identifier: string, file: CachedFile<ObjectMeta>): SourceRef {
    return { identifier, path: file.path, version: file.meta.etag, lastModified: new Date(file.meta.lastModified) };
  }

  /** Runs once per identifier at a time (single-flight): a miss, or a cached copy due for revalidation. */
  private async fetch(identifier: string): Promise<SourceRef> {
    const stale = this.cache.peek(identifier);
    if (stale && this.isFresh(stale)) return this.refFor(identifier, stale);
    const deadline = AbortSignal.timeout(this.config.deadlineMs);
    try {
      return await this.withRetries(deadline, () => this.fetchOnce(identifier, stale?.meta.etag, deadline));
    } catch (error) {
      const { result } = classify(error);
      if (result === 'not_found' || result === 'denied') {
        await this.cache.remove(identifier);
        const missing = notFound(`no image with identifier "${printable(identifier)}"`);
        this.missing?.set(identifier, missing);
        if (result === 'denied') this.log.warn({ identifier: printable(identifier) }, 'S3 denied access to a source object; answered 404');
        throw missing;
      }
      const current = this.cache.peek(identifier);
      if (current) {
        // S3 is failing but we hold a copy: serving it beats an error, and it is revalidated again next time.
        this.staleServed.inc();
        this.log.warn({ err: error, identifier: printable(identifier) }, 'S3 failed during revalidation; serving the cached copy');
        return this.refFor(identifier, current);
      }
      throw this.failure(error, `fetching "${printable(identifier)}"`, deadline);
    }
  }

  /** One attempt: a (conditional) GET streamed into the disk cache, or into memory when the cache cannot take it. */
  private async fetchOnce(identifier: string, etag: string | undefined, deadline: AbortSignal): Promise<SourceRef> {
    try {
      const file = await this.cache.put(identifier, (temp) =>
        this.get(identifier, etag, deadline, async (response, size) => {
          await pipeline(response.Body as Readable, createWriteStream(temp), { signal: deadline }).catch((error: unknown) => {
            throw deadline.aborted ? error : new IncompleteBody('the object body ended early', { cause: error });
          });
          return { size, meta: objectMeta(response) };
        }),
      );
      return this.refFor(identifier, file);
    } catch (error) {
      if (error instanceof NotModified) return this.confirmCached(identifier, deadline);
      if (!(error instanceof CacheUnavailableError)) throw error;
      return this.fetchIntoMemory(identifier, deadline);
    }
  }

  private async confirmCached(identifier: string, deadline: AbortSignal): Promise<SourceRef> {
    const cached = this.cache.peek(identifier);
    // Evicted while we asked: fetch the whole object.
    if (!cached) return this.fetchOnce(identifier, undefined, deadline);
    await this.cache.updateMeta(identifier, { ...cached.meta, checkedAt: Date.now() });
    return this.refFor(identifier, cached);
  }

  /** The degraded path: the object in memory, bounded, served for this request only. */
  private fetchIntoMemory(identifier: string, deadline: AbortSignal): Promise<SourceRef> {
    return this.get(identifier, undefined, deadline, async (response, size) => {
      if (size > this.config.memoryFallbackMaxBytes) {
        (response.Body as Readable).destroy();
        throw sourceUnavailable(
          `the image is too large to serve while the disk cache is unavailable (${size} bytes)`,
          this.config.retryAfterSeconds,
        );
      }
      const bytes = Buffer.from(await response.Body!.transformToByteArray());
      if (bytes.length !== size) throw new IncompleteBody(`expected ${size} bytes, got ${bytes.length}`);
      const meta = objectMeta(response);
      return { identifier, path: `s3://${this.config.bucket}/${this.key(identifier)}`, bytes, version: meta.etag, lastModified: new Date(meta.lastModified) };
    });
  }

  /** One GET, timed and counted, handing the response to `consume` (which reads the body). */
  private async get<T>(
    identifier: string,
    etag: string | undefined,
    deadline: AbortSignal,
    consume: (response: GetObjectCommandOutput, size: number) => Promise<T>,
  ): Promise<T> {
    const done = this.fetchSeconds.startTimer();
    let result: FetchResult = 'ok';
    try {
      const response = await this.client.send(
        new GetObjectCommand({ Bucket: this.config.bucket, Key: this.key(identifier), IfNoneMatch: etag ? `"${etag}"` : undefined }),
        { abortSignal: deadline },
      );
      if (response.ContentLength === undefined || !response.Body) throw new IncompleteBody('the response has no length or body');
      return await consume(response, response.ContentLength);
    } catch (error) {
      if (error instanceof IiifError) throw error;
      result = classify(error).result;
      throw result === 'not_modified' ? new NotModified() : error;
    } finally {
      done();
      this.fetches.inc({ result });
    }
  }

  private async withRetries<T>(deadline: AbortSignal, attempt: () => Promise<T>): Promise<T> {
    for (let n = 1; ; n++) {
      try {
        return await attempt();
      } catch (error) {
        if (deadline.aborted || n >= this.config.maxAttempts || !classify(error).retryable || error instanceof IiifError) throw error;
        const delay = Math.random() * Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** (n - 1));
        await sleep(delay, undefined, { signal: deadline }).catch(() => {
          throw error;
        });
      }
    }
  }

  /** The IiifError a client gets for a failure we could not get past. */
  private failure(error: unknown, doing: string, deadline?: AbortSignal): IiifError {
    if (error instanceof IiifError) return error;
    const { result } = classify(error);
    this.log.warn({ err: error, result }, `S3 failed ${doing}`);
    if (deadline?.aborted) return sourceUnavailable(`the image store did not answer in time while ${doing}`, this.config.retryAfterSeconds);
    switch (result) {
      case 'throttled':
      case 'unavailable':
        return sourceUnavailable(`the image store is unavailable (${result}) while ${doing}`, this.config.retryAfterSeconds);
      case 'incomplete':
        return badGateway(`the image store sent an incomplete object while ${doing}`);
      default:
        return badGateway(`the image store refused the request while ${doing}`);
    }
  }

  private key(identifier: string): string {
    return this.config.prefix + identifier;
  }
}

function objectMeta(response: GetObjectCommandOutput): ObjectMeta {
  return {
    // Quotes are part of the ETag's wire form, not of its value.
    etag: (response.ETag ?? '').replace(/^"|"$/g, ''),
    lastModified: (response.LastModified ?? new Date()).toISOString(),
    checkedAt: Date.now(),
  };
}

function isServable(identifier: string): boolean {
  try {
    checkIdentifier(identifier);
    return true;
  } catch {
    return false;
  }
}
