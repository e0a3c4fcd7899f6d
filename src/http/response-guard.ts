import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { ServerResponse } from 'node:http';
import { overloaded } from '../errors.js';
import type { Metrics } from '../metrics.js';

/**
 * Bodies up to this size are written to the socket at once and never refused: a tile or an
 * error message. Larger ones go out in chunks of this size, so a client that stops reading is
 * noticed (no chunk is taken) and the rest of the body is never handed to the socket.
 */
export const CHUNK_BYTES = 64 * 1024;

/**
 * Bytes of response bodies handed to sockets and not yet sent. A response holds its body in
 * memory until the client has read it, so slow or stalled readers (14 sockets that never read an
 * 83 MB PNG took RSS from 306 MB to 1.4 GB) are bounded here, not by admission control, which
 * frees its slot as soon as the render is done. A body that is shared (a cached result, a viewer
 * asset) is counted once per response: an upper bound.
 */
export class ResponseBudget {
  #inUse = 0;
  #largeInFlight = 0;

  constructor(readonly limitBytes: number) {}

  get inUse(): number {
    return this.#inUse;
  }

  /**
   * Takes `bytes` for a body about to be sent; false when a large body does not fit. Small bodies
   * always fit (refusing tiles is what an attacker holding the budget would want; their number is
   * bounded by the connections and the write timeout), and one large body is let through when no
   * other is in flight, so a body larger than the whole budget can still be served, alone.
   */
  tryTake(bytes: number): boolean {
    const large = bytes > CHUNK_BYTES;
    if (large && this.#largeInFlight > 0 && this.#inUse + bytes > this.limitBytes) return false;
    this.#inUse += bytes;
    if (large) this.#largeInFlight++;
    return true;
  }

  release(bytes: number): void {
    this.#inUse -= bytes;
    if (bytes > CHUNK_BYTES) this.#largeInFlight--;
  }
}

export interface ResponseGuardOptions {
  budget: ResponseBudget;
  /** A response whose client takes no bytes for this long is cut off. */
  writeTimeoutMs: number;
  /** Retry-After on a 503 for a body that does not fit the budget. */
  retryAfterSeconds: number;
  metrics: Metrics;
}

interface InFlight {
  response: ServerResponse;
  lastProgress: number;
}

/**
 * Counts every response body against the budget from the moment it is handed over until its
 * connection is done with it (sent, or the socket closed), refuses large bodies that do not fit
 * with 503 + Retry-After, and cuts off clients that stop reading: the socket is destroyed after
 * `writeTimeoutMs` without progress, which releases the body's memory.
 *
 * Progress is what the client reads. Node reports nothing while one large write drains (its
 * socket timeout even fires on a client reading steadily), so large bodies are written chunk by
 * chunk and each chunk the socket takes counts as progress.
 */
export function registerResponseGuard(app: FastifyInstance, { budget, writeTimeoutMs, retryAfterSeconds, metrics }: ResponseGuardOptions): void {
  const bytesGauge = metrics.gauge('iiif_response_bytes_in_flight', 'Bytes of response bodies handed to sockets and not yet sent.');
  const refusals = metrics.counter('iiif_response_budget_rejections_total', 'Responses answered 503 because their body did not fit the response memory budget.');
  const cutOff = metrics.counter('iiif_response_write_timeouts_total', 'Connections closed because the client read nothing for IIIF_WRITE_TIMEOUT_MS.');
  const inFlight = new Set<InFlight>();

  // One sweep for all responses instead of a timer each; a stalled client is cut off between
  // writeTimeoutMs and 1.25 × writeTimeoutMs after its last progress.
  const sweep = setInterval(
    () => {
      const stale = Date.now() - writeTimeoutMs;
      for (const entry of inFlight) {
        if (entry.lastProgress > stale) continue;
        inFlight.delete(entry);
        cutOff.inc();
        entry.response.destroy();
      }
    },
    Math.max(100, writeTimeoutMs / 4),
  );
  sweep.unref();
  app.addHook('onClose', (_instance, done) => {
    clearInterval(sweep);
    done();
  });

  app.addHook('onSend', (_request, reply, payload, done) => {
    const bytes = bodyBytes(payload);
    if (bytes === 0) return done(null, payload);
    if (!budget.tryTake(bytes)) {
      refusals.inc();
      return done(overloaded(`the server is sending too many large responses (a ${bytes}-byte body does not fit now); retry shortly`, retryAfterSeconds));
    }
    bytesGauge.set(budget.inUse);
    const entry: InFlight = { response: reply.raw, lastProgress: Date.now() };
    inFlight.add(entry);
    // 'close' follows the last byte handed to the OS, or a connection that ended early.
    reply.raw.once('close', () => {
      inFlight.delete(entry);
      budget.release(bytes);
      bytesGauge.set(budget.inUse);
    });
    if (bytes <= CHUNK_BYTES) return done(null, payload);
    reply.header('content-length', String(bytes));
    const body = typeof payload === 'string' ? Buffer.from(payload) : (payload as Buffer);
    done(null, inChunks(body, () => (entry.lastProgress = Date.now())));
  });
}

/** Bytes of a body the handler produced in memory; 0 for none, and for streams (not held here). */
function bodyBytes(payload: unknown): number {
  if (Buffer.isBuffer(payload)) return payload.length;
  if (typeof payload === 'string') return Buffer.byteLength(payload);
  return 0;
}

/** `body` as a stream of CHUNK_BYTES views (no copies); asking for the next chunk is progress. */
function inChunks(body: Buffer, onProgress: () => void): Readable {
  let offset = 0;
  return new Readable({
    highWaterMark: CHUNK_BYTES,
    read() {
      onProgress();
      if (offset >= body.length) {
        this.push(null);
        return;
      }
      const end = Math.min(body.length, offset + CHUNK_BYTES);
      this.push(body.subarray(offset, end));
      offset = end;
    },
  });
}
