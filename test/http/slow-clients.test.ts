import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeFixtures } from '../fixtures.js';
import { appFor } from './helpers.js';

// Slow and stalled clients against a real listening server: nothing they do may hold memory or
// connections past the deadlines. Timings here are upper bounds with wide margins, not speeds.

let root: string;
// Noise does not compress: the full-size TIFF (about 27 MB) cannot sit in loopback socket
// buffers, so a client that stops reading keeps most of it in the server.
const BIG = '/iiif/3/noise.tif/full/max/0/default.tif';
beforeAll(async () => {
  ({ root } = await makeFixtures());
  await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 60 } } })
    .tiff({ compression: 'none' })
    .toFile(join(root, 'noise.tif'));
});

async function listening(env: Record<string, string>): Promise<{ app: FastifyInstance; port: number }> {
  const app = await appFor(root, env);
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, port: (app.server.address() as AddressInfo).port };
}

interface RawResponse {
  socket: Socket;
  status: number;
  headers: string;
}

/** Sends a request and stops reading as soon as the response head has arrived. */
async function neverReads(port: number, path: string): Promise<RawResponse> {
  const socket = connect(port, '127.0.0.1');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  const [head] = (await once(socket, 'data')) as [Buffer];
  socket.pause();
  const headers = head.subarray(0, Math.max(0, head.indexOf('\r\n\r\n'))).toString('latin1');
  return { socket, status: Number(headers.split(' ')[1]), headers };
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  return Number(new RegExp(`^${name} (\\d+)`, 'm').exec(text)![1]);
}

const inFlightBytes = (port: number) => metric(port, 'iiif_response_bytes_in_flight');

describe('clients that stop reading', () => {
  let app: FastifyInstance;
  let port: number;
  const BUDGET = 64 * 2 ** 20;

  beforeAll(async () => {
    ({ app, port } = await listening({ IIIF_RESPONSE_MEMORY_BYTES: String(BUDGET), IIIF_WRITE_TIMEOUT_MS: '3000', IIIF_LARGE_RENDER_RETRY_AFTER_SECONDS: '7' }));
  });
  afterAll(() => app.close());

  it('hold at most the response budget; more get 503 + Retry-After; stalled sockets are cut and release it', async () => {
    const size = (await (await fetch(`http://127.0.0.1:${port}${BIG}`)).arrayBuffer()).byteLength;
    expect(size).toBeGreaterThan(BUDGET / 2);
    const readers: RawResponse[] = [];
    for (let i = 0; i < 8; i++) {
      const reader = await neverReads(port, BIG);
      readers.push(reader);
      // Never more held than the budget (one 37 MB body in 64 MiB); the rest refused, not queued in memory.
      expect(await inFlightBytes(port)).toBeLessThanOrEqual(BUDGET);
      expect([200, 503]).toContain(reader.status);
      if (reader.status === 503) expect(reader.headers).toMatch(/^retry-after: 7$/im);
    }
    const served = readers.filter((reader) => reader.status === 200);
    expect(served.length).toBeGreaterThanOrEqual(1);
    expect(readers.length - served.length).toBeGreaterThanOrEqual(1);
    // Nobody reads: after the write timeout (3 s) the server destroys those sockets, which
    // releases their bodies. (The client cannot tell: its FIN waits behind the unread bytes.)
    const cutBy = Date.now() + 15_000;
    while ((await inFlightBytes(port)) > 0) {
      expect(Date.now()).toBeLessThan(cutBy);
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(await metric(port, 'iiif_response_write_timeouts_total')).toBe(served.length);
    // The budget is free again.
    const again = await neverReads(port, BIG);
    expect(again.status).toBe(200);
    again.socket.destroy();
    for (const reader of readers) reader.socket.destroy();
  }, 60_000);

  it('a client reading slowly but steadily gets the whole body', async () => {
    const socket = connect(port, '127.0.0.1');
    socket.write(`GET ${BIG} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    let received = 0;
    let sip = 0;
    // About 10 MB/s in 1 MiB sips with pauses, far below loopback speed. (The server sees
    // progress only as its socket's send buffer drains by half, up to 2 MB: the write timeout
    // must allow for that at the slowest client it means to serve.)
    socket.on('data', (chunk: Buffer) => {
      received += chunk.length;
      sip += chunk.length;
      if (sip < 2 ** 20) return;
      sip = 0;
      socket.pause();
      setTimeout(() => socket.resume(), 100);
    });
    await once(socket, 'close');
    expect(received).toBeGreaterThan(12 * 2 ** 20);
  }, 60_000);
});

describe('request deadlines', () => {
  let app: FastifyInstance;
  let port: number;

  beforeAll(async () => {
    ({ app, port } = await listening({ IIIF_HEADERS_TIMEOUT_MS: '1000', IIIF_REQUEST_TIMEOUT_MS: '2000', IIIF_KEEP_ALIVE_TIMEOUT_MS: '1000' }));
  });
  afterAll(() => app.close());

  /** Opens a connection that writes `first`, then one byte of `trickle` every 200 ms; resolves with what it got and when it closed. */
  function trickler(first: string, trickle: string) {
    const socket = connect(port, '127.0.0.1');
    const started = Date.now();
    let received = '';
    let sent = 0;
    socket.on('connect', () => socket.write(first));
    socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    const timer = setInterval(() => {
      if (!socket.destroyed && sent < trickle.length) socket.write(trickle[sent++]!);
    }, 200);
    return once(socket, 'close').then(() => {
      clearInterval(timer);
      return { received, ms: Date.now() - started };
    });
  }

  it('heads and bodies trickled byte by byte, and silent connections, get 408 and are closed (300 at once)', async () => {
    const endless = 'x'.repeat(10_000);
    const outcomes = await Promise.all([
      ...Array.from({ length: 100 }, () => trickler('GET /health HTTP/1.1\r\n', `X-Slow: ${endless}`)),
      ...Array.from({ length: 100 }, () => trickler('POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 10000\r\n\r\n', endless)),
      ...Array.from({ length: 100 }, () => trickler('', '')),
    ]);
    for (const { received, ms } of outcomes) {
      // A body trickled after a routed request follows its answer; either way it ends in 408.
      expect(received).toMatch(/HTTP\/1\.1 408 Request Timeout[^]*$/);
      // Deadline 1 s (head) or 2 s (body), checked every second: far below the 20 s they would trickle.
      expect(ms).toBeLessThan(10_000);
    }
  }, 30_000);

  it('an idle keep-alive connection is closed after IIIF_KEEP_ALIVE_TIMEOUT_MS', async () => {
    const socket = connect(port, '127.0.0.1');
    const started = Date.now();
    socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    const [head] = (await once(socket, 'data')) as [Buffer];
    expect(head.toString()).toMatch(/^HTTP\/1\.1 200 /);
    await once(socket, 'close');
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
