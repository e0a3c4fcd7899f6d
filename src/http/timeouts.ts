import type { FastifyHttpOptions } from 'fastify';
import type { Server } from 'node:http';
import type { Config } from '../config.js';

/**
 * How often Node looks for connections past their header or request deadline (its default is
 * 30 s, which would let a 10 s deadline run to 40 s). A sweep over the open connections, cheap.
 */
const CHECK_EVERY_MS = 1_000;

export type ServerTimeouts = Pick<FastifyHttpOptions<Server>, 'keepAliveTimeout' | 'requestTimeout' | 'connectionTimeout' | 'http'>;

/**
 * The socket deadlines, so no client holds a connection by being slow (fastify's own defaults
 * set none but keep-alive):
 * - headers: the request head must arrive within IIIF_HEADERS_TIMEOUT_MS of the connection (or
 *   of the previous response), else 408 and the socket is closed; this also ends connections
 *   that never send a byte.
 * - request: the whole request, body included, within IIIF_REQUEST_TIMEOUT_MS (3,000
 *   connections trickling a body at one byte per 20 s were all still held after 65 s).
 * - idle: a keep-alive connection between requests, IIIF_KEEP_ALIVE_TIMEOUT_MS.
 * - write: the response, while the client stops reading, is cut off by the response guard
 *   (src/http/response-guard.ts), not here: Node's socket timeout fires during a long write even
 *   when the client reads steadily, so it stays off (connectionTimeout 0), and time spent
 *   rendering is bounded by the render deadlines, not by the socket.
 */
export function serverTimeouts(config: Pick<Config, 'headersTimeoutMs' | 'requestTimeoutMs' | 'keepAliveTimeoutMs'>): ServerTimeouts {
  return {
    keepAliveTimeout: config.keepAliveTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: 0,
    http: { headersTimeout: config.headersTimeoutMs, requestTimeout: config.requestTimeoutMs, connectionsCheckingInterval: CHECK_EVERY_MS },
  };
}
