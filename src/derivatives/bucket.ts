import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { classify, IncompleteBody } from '../source/s3-failures.js';
import { DerivativeStoreError } from './errors.js';
import { unquote } from './keys.js';

export interface ObjectHead {
  /** Unquoted. */
  etag: string;
  size: number;
  /** User metadata (x-amz-meta-*), names in lower case. */
  metadata: Record<string, string>;
}

export interface SmallObject {
  text: string;
  etag: string;
}

/** An object's head and, when it is no longer than asked, its body. */
export interface ObjectWithBody extends ObjectHead {
  /** Undefined when the object is longer than the caller takes (then it was not read). */
  body: Buffer | undefined;
}

export interface ListedObject {
  key: string;
  size: number;
  lastModified: Date;
}

/** A local file to upload: streamed, never held in memory. */
export interface FileBody {
  path: string;
  size: number;
}

/**
 * Conditional writes: `ifNoneMatch: '*'` creates only when the key is absent, `ifMatch` replaces
 * only the version read before. Stores that ignore the headers write anyway (see Leases).
 */
export type PutCondition = { ifNoneMatch: '*' } | { ifMatch: string };

export interface PutOptions {
  condition?: PutCondition;
  metadata?: Record<string, string>;
  contentType?: string;
}

/** What a store says to a conditional write whose condition failed (412). */
export const PRECONDITION_FAILED = 'precondition-failed';

// A single PUT can hold at most 5 GiB.
const MAX_PUT_BYTES = 5 * 1024 ** 3;
// Tries of an idempotent request; full-jitter pauses of up to 100 ms, then 200 ms.
const ATTEMPTS = 3;
const BACKOFF_MS = 50;

/**
 * One bucket of the derivative store, as the few S3 requests it needs: every request has a
 * deadline, idempotent ones are tried again after transient failures, "not there" is an answer
 * rather than an error, and every other failure is a DerivativeStoreError (so callers fall back
 * instead of failing the request).
 */
export class Bucket {
  constructor(
    private readonly client: S3Client,
    readonly name: string,
    /** Deadline of one small request (HEAD, GET of a small object, a listing page, a delete). */
    private readonly deadlineMs: number,
  ) {}

  async head(key: string): Promise<ObjectHead | undefined> {
    const answer = await this.lookup('HEAD', key, (abortSignal) => this.client.send(new HeadObjectCommand({ Bucket: this.name, Key: key }), { abortSignal }));
    if (!answer) return undefined;
    return {
      etag: unquote(answer.ETag ?? ''),
      size: answer.ContentLength ?? 0,
      metadata: answer.Metadata ?? {},
    };
  }

  /** A small object's text (a lease, image information); undefined when absent. */
  async getText(key: string): Promise<SmallObject | undefined> {
    const object = await this.get(key, Infinity);
    return object && { text: object.body!.toString('utf8'), etag: object.etag };
  }

  /** An object with its metadata, and its body when it is at most `maxBytes` long; undefined when absent. */
  get(key: string, maxBytes: number): Promise<ObjectWithBody | undefined> {
    return this.lookup('GET', key, async (abortSignal) => {
      const answer = await this.client.send(new GetObjectCommand({ Bucket: this.name, Key: key }), { abortSignal });
      const head = { etag: unquote(answer.ETag ?? ''), size: answer.ContentLength ?? 0, metadata: answer.Metadata ?? {} };
      if (maxBytes !== Infinity && (answer.ContentLength === undefined || answer.ContentLength > maxBytes)) {
        // Not read: closing the body ends the transfer.
        (answer.Body as { destroy?: () => void } | undefined)?.destroy?.();
        return { ...head, body: undefined };
      }
      const bytes = await answer.Body!.transformToByteArray();
      if (answer.ContentLength !== undefined && bytes.length !== answer.ContentLength) {
        throw new IncompleteBody(`expected ${answer.ContentLength} bytes, got ${bytes.length}`);
      }
      return { ...head, size: bytes.length, body: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length) };
    });
  }

  /**
   * Writes an object and returns its ETag, or PRECONDITION_FAILED when a condition the store
   * honours failed. A file is streamed with its length and MD5 (Content-MD5), so the store
   * refuses a body that arrived damaged or short instead of keeping it.
   */
  async put(key: string, body: Buffer | FileBody, options: PutOptions = {}): Promise<string | typeof PRECONDITION_FAILED> {
    if (!Buffer.isBuffer(body) && body.size > MAX_PUT_BYTES) {
      throw new DerivativeStoreError(`a derivative of ${body.size} bytes is larger than one upload may be`);
    }
    const md5 = Buffer.isBuffer(body) ? createHash('md5').update(body).digest('base64') : await fileMd5(body.path);
    const stream = Buffer.isBuffer(body) ? undefined : createReadStream(body.path);
    const condition = options.condition;
    try {
      const answer = await this.client.send(
        new PutObjectCommand({
          Bucket: this.name,
          Key: key,
          Body: Buffer.isBuffer(body) ? body : stream,
          ContentLength: Buffer.isBuffer(body) ? body.length : body.size,
          ContentMD5: md5,
          ContentType: options.contentType,
          Metadata: options.metadata,
          IfNoneMatch: condition && 'ifNoneMatch' in condition ? condition.ifNoneMatch : undefined,
          IfMatch: condition && 'ifMatch' in condition ? `"${condition.ifMatch}"` : undefined,
        }),
        // A large upload has no deadline of its own: the client's socket timeout ends a stalled one.
        stream ? {} : { abortSignal: AbortSignal.timeout(this.deadlineMs) },
      );
      return unquote(answer.ETag ?? '');
    } catch (error) {
      if (isPreconditionFailed(error)) return PRECONDITION_FAILED;
      throw failure('PUT', key, error);
    } finally {
      stream?.destroy();
    }
  }

  /** Every object under a prefix, page by page. */
  async *list(prefix: string): AsyncGenerator<ListedObject> {
    let token: string | undefined;
    do {
      const page = await this.send('LIST', prefix, (abortSignal) =>
        this.client.send(new ListObjectsV2Command({ Bucket: this.name, Prefix: prefix, ContinuationToken: token }), { abortSignal }),
      );
      for (const object of page.Contents ?? []) {
        if (object.Key) yield { key: object.Key, size: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /**
   * Deletes keys (absent ones are fine), one request each and one at a time: multi-object
   * delete is missing from some S3-compatible stores and s3rver fails it for keys sharing a
   * folder, and a version has only four objects.
   */
  async delete(keys: readonly string[]): Promise<void> {
    for (const key of keys) {
      await this.send('DELETE', key, (abortSignal) => this.client.send(new DeleteObjectCommand({ Bucket: this.name, Key: key }), { abortSignal }));
    }
  }

  /**
   * Runs an idempotent request (not a PUT: a lease create must not be sent twice) with up to
   * ATTEMPTS tries, all within one deadline: a dropped connection, a 5xx, throttling or a torn
   * read of an object being overwritten (stores without atomic writes) is worth another look.
   */
  private async send<T>(what: string, key: string, request: (abortSignal: AbortSignal) => Promise<T>): Promise<T> {
    const deadline = AbortSignal.timeout(this.deadlineMs);
    for (let attempt = 1; ; attempt++) {
      try {
        return await request(deadline);
      } catch (error) {
        if (deadline.aborted || attempt >= ATTEMPTS || !classify(error).retryable) throw failure(what, key, error);
        await sleep(Math.random() * BACKOFF_MS * 2 ** attempt);
      }
    }
  }

  /** As send, but "no such key" answers undefined. */
  private async lookup<T>(what: string, key: string, request: (abortSignal: AbortSignal) => Promise<T>): Promise<T | undefined> {
    try {
      return await this.send(what, key, request);
    } catch (error) {
      if (classify((error as DerivativeStoreError).cause).result === 'not_found') return undefined;
      throw error;
    }
  }
}

function failure(what: string, key: string, error: unknown): DerivativeStoreError {
  if (error instanceof DerivativeStoreError) return error;
  return new DerivativeStoreError(`derivative store: ${what} ${key} failed (${classify(error).result})`, { cause: error });
}

function isPreconditionFailed(error: unknown): boolean {
  const service = error as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  return service?.$metadata?.httpStatusCode === 412 || service?.name === 'PreconditionFailed';
}

/** Content-MD5 of a file, read in chunks (the event loop hashes 64 KiB at a time). */
async function fileMd5(path: string): Promise<string> {
  const hash = createHash('md5');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('base64');
}
