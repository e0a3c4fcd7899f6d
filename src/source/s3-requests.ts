import { createWriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { GetObjectCommand, HeadObjectCommand, S3Client, type GetObjectCommandInput, type GetObjectCommandOutput } from '@aws-sdk/client-s3';
import type { Counter, Histogram } from 'prom-client';
import type { Log } from '../cache/disk-cache.js';
import type { S3Config } from '../config.js';
import { badGateway, IiifError, sourceUnavailable, undecodableSource } from '../errors.js';
import type { Metrics } from '../metrics.js';
import { LeanGet } from './s3-lean-get.js';
import { classify, FETCH_RESULTS, IncompleteBody, NotModified, VersionChanged, type FetchResult } from './s3-failures.js';
import { sourceChanged } from './source.js';

/** Which version of an object S3 holds now. */
export interface ObjectVersion {
  /** Without the quotes of its wire form. */
  etag: string;
  size: number;
  lastModified: Date;
}

/** Where an object is: the source's bucket unless named (derivatives may live in another). */
export interface S3Location {
  bucket?: string;
  key: string;
}

/** What the requests read of a GET's answer, whichever path sent it (the SDK, or the lean one for blocks). */
type Answer = Pick<GetObjectCommandOutput, 'ETag' | 'ContentRange' | 'ContentLength' | 'LastModified'> & { Body?: unknown };

/** What a GET was for; labels iiif_source_gets_total. */
type GetKind = 'first' | 'range' | 'whole';

// Backoff between attempts: exponential from 100 ms, capped at 2 s, with full jitter so many
// containers retrying together do not hit S3 in lockstep.
const BACKOFF_BASE_MS = 100;
const BACKOFF_CAP_MS = 2_000;

/** Asked for at start-up; whether it exists does not matter, any answer from S3 does. */
const WARM_UP_KEY = '.iiif-elastic-warm-up';

/**
 * The requests the S3 source makes, one place for their accounting: each GET is timed,
 * counted by outcome and kind, its bytes counted; failures are classified, retried with
 * jittered backoff within a deadline, and turned into the IiifError a client gets. Every read
 * of a known version is pinned to it with If-Match, and its ETag checked on the answer too
 * (some S3-compatible stores ignore If-Match), so bytes of two versions never mix.
 */
export class S3Requests {
  private readonly fetches: Counter<'result'>;
  private readonly kinds: Counter<'kind'>;
  private readonly bytes: Counter;
  private readonly fetchSeconds: Histogram;
  /** Block reads, the hot path of a cold server, skip the SDK's per-request middleware stack. */
  private readonly lean: LeanGet;

  constructor(
    private readonly config: S3Config,
    readonly client: S3Client,
    metrics: Metrics,
    private readonly log: Log,
  ) {
    this.fetches = metrics.counter('iiif_source_fetch_total', 'Requests to S3 for source objects, by outcome.', ['result']);
    for (const result of FETCH_RESULTS) this.fetches.inc({ result }, 0);
    this.kinds = metrics.counter('iiif_source_gets_total', 'GETs to S3 by purpose: first (version and first block), range (blocks), whole (objects decoded whole).', ['kind']);
    this.bytes = metrics.counter('iiif_source_fetched_bytes_total', 'Body bytes received from S3.');
    this.fetchSeconds = metrics.histogram('iiif_source_fetch_seconds', 'Time per S3 request for a source object, body included.');
    this.lean = LeanGet.for(config, client);
  }

  /** One S3 client per process (the derivative store's too): our own retries, and timeouts per connection and per wait for bytes. */
  static client(config: S3Config): S3Client {
    return new S3Client({
      ...(config.region ? { region: config.region } : {}),
      ...(config.endpoint ? { endpoint: config.endpoint } : {}),
      forcePathStyle: config.forcePathStyle,
      // Retries are ours (below), so attempts, backoff and the deadline are counted in one place.
      maxAttempts: 1,
      requestHandler: { connectionTimeout: config.timeoutMs, socketTimeout: config.timeoutMs },
      // Derivative uploads go as a plain body with Content-MD5 (set by Bucket.put), not aws-chunked
      // with a trailing checksum, which some S3-compatible stores (s3rver) keep inside the object.
      // GETs send no checksum either way.
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
  }

  /**
   * Pays the first call's costs — the SDK's set-up, finding credentials, DNS and a connection
   * — before the first user request would: one HEAD of a key that need not exist. S3 not
   * answering is logged, not fatal: the requests after it report it as they should.
   */
  async warmUp(): Promise<void> {
    try {
      await this.client.send(new HeadObjectCommand({ Bucket: this.config.bucket, Key: this.config.prefix + WARM_UP_KEY }), {
        abortSignal: AbortSignal.timeout(this.config.timeoutMs),
      });
    } catch (error) {
      if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === undefined) {
        this.log.warn({ err: error }, 'S3 did not answer the start-up request; the first requests will find out more');
      }
    }
  }

  /**
   * The object's current version and its first `length` bytes (fewer when it is shorter).
   * With `etag`, asks only whether it changed: NotModified when it did not.
   */
  first(key: string, etag: string | undefined, length: number, deadline: AbortSignal): Promise<{ version: ObjectVersion; bytes: Buffer }> {
    const input = { Key: key, Range: `bytes=0-${length - 1}`, IfNoneMatch: etag && quoted(etag) };
    return this.get('first', () => this.sdkGet(input, deadline), async (response) => {
      const size = totalSize(response);
      const bytes = await readBody(response.Body as Readable, Math.min(length, size));
      return { version: { etag: unquoted(response.ETag), size, lastModified: response.LastModified ?? new Date() }, bytes };
    }).catch((error: unknown) => {
      // A range of an empty object cannot be satisfied.
      if ((error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 416) throw undecodableSource('the stored image is empty');
      throw error;
    });
  }

  /** Bytes [start, end) of exactly version `etag`; VersionChanged when S3 holds another now. */
  range(at: S3Location, etag: string, start: number, end: number, deadline: AbortSignal): Promise<Buffer> {
    const bucket = at.bucket ?? this.config.bucket;
    const [range, ifMatch] = [`bytes=${start}-${end - 1}`, quoted(etag)];
    const send = async (): Promise<Answer> =>
      (await this.lean.get(bucket, at.key, range, ifMatch, deadline)) ?? this.sdkGet({ Bucket: bucket, Key: at.key, Range: range, IfMatch: ifMatch }, deadline);
    return this.get('range', send, async (response) => {
      if (unquoted(response.ETag) !== etag) throw new VersionChanged();
      const length = end - start;
      if (response.ContentRange !== undefined && !response.ContentRange.startsWith(`bytes ${start}-${end - 1}/`)) {
        throw new IncompleteBody(`asked for bytes ${start}-${end - 1}, got ${response.ContentRange}`);
      }
      const bytes = await readBody(response.Body as Readable, response.ContentRange === undefined ? end : length);
      return response.ContentRange === undefined ? bytes.subarray(start, end) : bytes;
    });
  }

  /** The whole of version `etag` (`size` bytes), streamed into the file at `path`. */
  wholeToFile(at: S3Location, etag: string, size: number, path: string, deadline: AbortSignal): Promise<void> {
    return this.get('whole', () => this.sdkGet({ ...where(at), IfMatch: quoted(etag) }, deadline), async (response) => {
      checkWhole(response, etag, size);
      await pipeline(response.Body as Readable, createWriteStream(path), { signal: deadline }).catch((error: unknown) => {
        throw deadline.aborted ? error : new IncompleteBody('the object body ended early', { cause: error });
      });
    });
  }

  /** The whole of version `etag` (`size` bytes) in memory. */
  wholeToMemory(at: S3Location, etag: string, size: number, deadline: AbortSignal): Promise<Buffer> {
    return this.get('whole', () => this.sdkGet({ ...where(at), IfMatch: quoted(etag) }, deadline), async (response) => {
      checkWhole(response, etag, size);
      return readBody(response.Body as Readable, size);
    });
  }

  async withRetries<T>(deadline: AbortSignal, attempt: () => Promise<T>): Promise<T> {
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
  failure(error: unknown, doing: string, deadline?: AbortSignal): IiifError {
    if (error instanceof IiifError) return error;
    const { result } = classify(error);
    if (result === 'changed') return sourceChanged();
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

  /** A GetObject through the SDK (the source's bucket unless the input names another). */
  private sdkGet(input: Omit<GetObjectCommandInput, 'Bucket'> & { Bucket?: string }, deadline: AbortSignal): Promise<Answer> {
    return this.client.send(new GetObjectCommand({ Bucket: this.config.bucket, ...input }), { abortSignal: deadline });
  }

  /** One GET sent by `send`, timed and counted, handing the response to `consume` (which reads the body). */
  private async get<T>(kind: GetKind, send: () => Promise<Answer>, consume: (response: Answer) => Promise<T>): Promise<T> {
    const done = this.fetchSeconds.startTimer();
    this.kinds.inc({ kind });
    let result: FetchResult = 'ok';
    try {
      const response = await send();
      if (response.ContentLength === undefined || !response.Body) throw new IncompleteBody('the response has no length or body');
      const value = await consume(response);
      this.bytes.inc(response.ContentLength);
      return value;
    } catch (error) {
      if (error instanceof IiifError) throw error;
      result = classify(error).result;
      throw result === 'not_modified' ? new NotModified() : error;
    } finally {
      done();
      this.fetches.inc({ result });
    }
  }
}

const where = (at: S3Location): { Bucket?: string; Key: string } => (at.bucket === undefined ? { Key: at.key } : { Bucket: at.bucket, Key: at.key });

const quoted = (etag: string): string => `"${etag}"`;

// Quotes are part of the ETag's wire form, not of its value.
const unquoted = (etag: string | undefined): string => (etag ?? '').replace(/^"|"$/g, '');

/** The object's length: from Content-Range on a 206, from Content-Length on a 200. */
function totalSize(response: Answer): number {
  const total = /\/(\d+)$/.exec(response.ContentRange ?? '')?.[1];
  return total === undefined ? response.ContentLength! : Number(total);
}

function checkWhole(response: Answer, etag: string, size: number): void {
  if (unquoted(response.ETag) !== etag) throw new VersionChanged();
  if (response.ContentLength !== size) throw new IncompleteBody(`expected ${size} bytes, the answer has ${response.ContentLength}`);
}

/**
 * Exactly `length` bytes of a body: more are not read (the connection is dropped), fewer are
 * an incomplete body, retried like a broken connection. A body of exactly `length` bytes is
 * read to its end, so its keep-alive connection goes back to the pool (stopping at the last
 * byte, before the end is seen, would close it: a new connection per block).
 */
async function readBody(body: Readable, length: number): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let received = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk as Buffer);
      received += (chunk as Buffer).length;
      if (received > length) break;
    }
  } catch (error) {
    throw new IncompleteBody('the object body ended early', { cause: error });
  } finally {
    body.destroy();
  }
  if (received < length) throw new IncompleteBody(`expected ${length} bytes, got ${received}`);
  return Buffer.concat(chunks, received).subarray(0, length);
}
