import { LRUCache } from 'lru-cache';
import { IiifError } from '../errors.js';
import { TokenBucket } from '../source/token-bucket.js';

/** Clients tracked at once: a flood from many addresses evicts the oldest, which start afresh. */
const TRACKED_CLIENTS = 10_000;

export interface ClientMissLimits {
  /** Unknown identifiers per second, on average, one client may ask for; 0 turns the limit off. */
  ratePerSecond: number;
  burst: number;
}

/**
 * Unknown identifiers, counted per client. Each one may cost the source a request (an S3 GET),
 * and the source's own limit (IIIF_S3_MISS_RATE) is shared by everyone: without this, one client
 * probing made-up identifiers would use it up and new legitimate images would be refused for all.
 * A client past its share gets 429 for any image until the share refills (telling known from
 * unknown is the lookup being saved); other clients are unaffected.
 * Clients are told apart by address, which behind a load balancer needs IIIF_TRUST_PROXY (the
 * address the balancer appended, not one the client wrote).
 */
export class ClientMisses {
  private readonly clients: LRUCache<string, TokenBucket>;

  constructor(private readonly limits: ClientMissLimits) {
    this.clients = new LRUCache({ max: TRACKED_CLIENTS });
  }

  /** Throws 429 + Retry-After when `client` has used up its unknown identifiers. */
  check(client: string): void {
    const bucket = this.clients.get(client);
    if (bucket && !bucket.hasToken()) {
      throw new IiifError(429, 'IIIF_TOO_MANY_MISSES', 'too many requests for images that do not exist; retry later', {
        'retry-after': String(bucket.secondsToNext),
      });
    }
  }

  /** Counts one unknown identifier against `client`. */
  record(client: string): void {
    if (this.limits.ratePerSecond === 0) return;
    let bucket = this.clients.get(client);
    if (!bucket) {
      bucket = new TokenBucket(this.limits.ratePerSecond, this.limits.burst);
      this.clients.set(client, bucket);
    }
    bucket.take();
  }
}
