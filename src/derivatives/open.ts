import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { S3Client } from '@aws-sdk/client-s3';
import type { Config } from '../config.js';
import type { Metrics } from '../metrics.js';
import { S3Requests } from '../source/s3-requests.js';
import { Bucket } from './bucket.js';
import { FleetConversions } from './fleet.js';
import { Leases } from './lease.js';
import { DerivativeStore } from './store.js';

export interface Derivatives {
  store: DerivativeStore;
  leases: Leases;
  fleet: FleetConversions;
  /** Destroy it when the process stops (unless it is the source's, given in DerivativeOptions). */
  client: S3Client;
}

export interface DerivativeOptions {
  /** This container's name in its leases; defaults to host name, process id and a random suffix. */
  owner?: string;
  /** See LeaseOptions.settleMs; only stores that ignore conditional writes wait it. */
  settleMs?: number;
  /** The S3 client to use (the source's, so a process has one); one is made otherwise. */
  client?: S3Client;
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
  // The source's kind of client: one attempt a send (retries are Bucket's, for idempotent
  // requests only: a lease create must never be sent twice), uploads without aws-chunked framing.
  const client = options.client ?? S3Requests.client(s3);
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
