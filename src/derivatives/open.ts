import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { S3Client } from '@aws-sdk/client-s3';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { Bucket } from './bucket.js';
import { FleetConversions } from './fleet.js';
import { Leases } from './lease.js';
import { DerivativeStore } from './store.js';

export interface Derivatives {
  store: DerivativeStore;
  leases: Leases;
  fleet: FleetConversions;
  /** Destroy it when the process stops. */
  client: S3Client;
}

export interface DerivativeOptions {
  /** This container's name in its leases; defaults to host name, process id and a random suffix. */
  owner?: string;
  /** See LeaseOptions.settleMs; only stores that ignore conditional writes wait it. */
  settleMs?: number;
}

// Longer than any read-then-write of a lease takes on a healthy store (two small requests).
const SETTLE_MS = 1000;
// Waiters look for the derivative after 100 ms, then after 200, 400… at most every second (two small requests a look).
const FIRST_POLL_MS = 100;
const MAX_POLL_MS = 1000;

/** The fleet's derivative store, when IIIF_DERIVATIVE_PREFIX is set (S3 source only); one S3 client for all of it. */
export function openDerivatives(config: Config, metrics: Metrics, options: DerivativeOptions = {}): Derivatives | undefined {
  const { s3, derivatives } = config;
  if (!s3 || !derivatives) return undefined;
  // Built as the source's client is (src/source/s3.ts), so the two can become one.
  const client = new S3Client({
    ...(s3.region ? { region: s3.region } : {}),
    ...(s3.endpoint ? { endpoint: s3.endpoint } : {}),
    forcePathStyle: s3.forcePathStyle,
    // Retries are Bucket's, for idempotent requests only: a lease create must never be sent twice.
    maxAttempts: 1,
    requestHandler: { connectionTimeout: s3.timeoutMs, socketTimeout: s3.timeoutMs },
    // A streamed upload goes as a plain body with Content-MD5 (set by Bucket.put), not aws-chunked
    // with a trailing checksum, which some S3-compatible stores (s3rver) keep inside the object.
    requestChecksumCalculation: 'WHEN_REQUIRED',
  });
  const bucket = new Bucket(client, derivatives.bucket, s3.deadlineMs);
  const sources = derivatives.bucket === s3.bucket ? bucket : new Bucket(client, s3.bucket, s3.deadlineMs);
  const store = new DerivativeStore(bucket, derivatives.prefix, sources);
  const leases = new Leases(bucket, derivatives.prefix, {
    owner: options.owner ?? `${hostname()}/${process.pid}/${randomUUID().slice(0, 8)}`,
    leaseSeconds: derivatives.leaseSeconds,
    settleMs: options.settleMs ?? SETTLE_MS,
  });
  const fleet = new FleetConversions(store, leases, { waitMs: derivatives.waitMs, firstPollMs: FIRST_POLL_MS, maxPollMs: MAX_POLL_MS }, metrics);
  return { store, leases, fleet, client };
}
