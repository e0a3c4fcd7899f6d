import { ServerError } from '../errors.js';

/**
 * The derivative store could not be read or written (S3 refused, failed or timed out). Never a
 * response by itself: the caller serves from the source, or from a pyramid it made locally.
 */
export class DerivativeStoreError extends ServerError {
  constructor(message: string, options?: ErrorOptions) {
    super('DERIVATIVE_STORE_FAILED', message, options);
  }
}

/** Another container holds this source version's lease now: whatever we made must not be published. */
export class LeaseLostError extends ServerError {
  constructor(message: string) {
    super('DERIVATIVE_LEASE_LOST', message);
  }
}
