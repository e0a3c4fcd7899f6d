import { IncompleteWriteError } from '../cache/disk-state.js';
import { ServerError } from '../errors.js';

/** How one S3 request ended; the values label iiif_source_fetch_total. */
export type FetchResult =
  | 'ok'
  | 'not_modified'
  | 'changed'
  | 'not_found'
  | 'denied'
  | 'throttled'
  | 'unavailable'
  | 'incomplete'
  | 'error';

export const FETCH_RESULTS: readonly FetchResult[] = ['ok', 'not_modified', 'changed', 'not_found', 'denied', 'throttled', 'unavailable', 'incomplete', 'error'];

/** Thrown by a conditional GET whose object has not changed (S3 answers 304 as an error). */
export class NotModified extends ServerError {
  constructor() {
    super('S3_NOT_MODIFIED', 'not modified');
  }
}

/** The store holds another version than the one being read (If-Match failed, or the answer carries another ETag). */
export class VersionChanged extends ServerError {
  constructor() {
    super('S3_VERSION_CHANGED', 'the object changed');
  }
}

/** A body that ended before its Content-Length, whatever layer noticed it. */
export class IncompleteBody extends ServerError {
  constructor(message: string, options?: ErrorOptions) {
    super('S3_INCOMPLETE_BODY', message, options);
  }
}

const THROTTLING = new Set(['SlowDown', 'Throttling', 'ThrottlingException', 'RequestLimitExceeded', 'TooManyRequestsException', 'RequestThrottled']);
const NOT_FOUND = new Set(['NoSuchKey', 'NotFound']);
const DENIED = new Set(['AccessDenied', 'Forbidden', 'AllAccessDisabled', 'InvalidAccessKeyId', 'SignatureDoesNotMatch']);

/** What an S3 failure means for us: its metric label, and whether trying again can help. */
export function classify(error: unknown): { result: FetchResult; retryable: boolean } {
  if (error instanceof NotModified) return { result: 'not_modified', retryable: false };
  if (error instanceof VersionChanged) return { result: 'changed', retryable: false };
  if (error instanceof IncompleteBody || error instanceof IncompleteWriteError) return { result: 'incomplete', retryable: true };
  const service = error as { name?: string; $metadata?: { httpStatusCode?: number } } | undefined;
  const status = service?.$metadata?.httpStatusCode;
  const name = service?.name ?? '';
  if (status === 304) return { result: 'not_modified', retryable: false };
  // If-Match failed: the object is no longer the version being read.
  if (status === 412 || name === 'PreconditionFailed') return { result: 'changed', retryable: false };
  if (NOT_FOUND.has(name) || status === 404) return { result: 'not_found', retryable: false };
  if (DENIED.has(name) || status === 403) return { result: 'denied', retryable: false };
  if (THROTTLING.has(name) || status === 429) return { result: 'throttled', retryable: true };
  if (status !== undefined && status >= 500) return { result: 'unavailable', retryable: true };
  if (status !== undefined && status >= 400) return { result: 'error', retryable: false };
  // No HTTP status: the connection failed, timed out or was reset. Worth another attempt.
  return { result: 'unavailable', retryable: true };
}
