import { once } from 'node:events';
import { Agent, request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../../scripts/cluster/server-process.js';
import { makeFixtures } from '../fixtures.js';

// The drain as the compiled server does it on a real signal: /health, keep-alive, in-flight, exit.
let root: string;
beforeAll(async () => {
  ({ root } = await makeFixtures());
  // Noise does not compress: its full-size TIFF (27 MB) cannot sit in loopback socket buffers,
  // so a client that stops reading keeps that response in flight for as long as it likes.
  await sharp({ create: { width: 3000, height: 3000, channels: 3, background: '#000', noise: { type: 'gaussian', mean: 128, sigma: 60 } } })
    .tiff({ compression: 'none' })
    .toFile(join(root, 'noise.tif'));
});

const DRAIN = { IIIF_DRAIN_DELAY_MS: '1500', IIIF_DRAIN_TIMEOUT_MS: '15000' };

async function get(port: number, path: string, agent?: Agent) {
  const response = await new Promise<import('node:http').IncomingMessage>((resolve, reject) =>
    request({ host: '127.0.0.1', port, path, agent }, resolve).on('error', reject).end(),
  );
  const socket = response.socket; // detached from the response once it has been read
  const chunks: Buffer[] = [];
  for await (const chunk of response) chunks.push(chunk as Buffer);
  return { status: response.statusCode, headers: response.headers, body: Buffer.concat(chunks), socket };
}

async function connectionRefused(port: number): Promise<boolean> {
  const socket = connect(port, '127.0.0.1');
  const code = await new Promise<string>((resolve) => {
    socket.once('connect', () => resolve('connected'));
    socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'));
  });
  socket.destroy();
  return code === 'ECONNREFUSED';
}

/** Sends a raw request and resolves once the response has begun; the caller then controls reading. */
async function startSlowReader(port: number, path: string): Promise<{ socket: Socket; head: Buffer }> {
  const socket = connect(port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  const [head] = (await once(socket, 'data')) as [Buffer];
  socket.pause();
  return { socket, head };
}

describe('graceful shutdown', () => {
  let server: ServerProcess;

  it('SIGTERM: /health fails at once, requests keep succeeding with Connection: close, in-flight finishes, exit 0', async () => {
    server = await startServerProcess({ IIIF_FILE_ROOT: root, ...DRAIN });
    const { port } = server;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const before = await get(port, '/health', agent);
    expect(before.status).toBe(200);
    expect(before.headers.connection).toBe('keep-alive');
    const idleKeepAlive = before.socket;

    const slow = await startSlowReader(port, '/iiif/3/noise.tif/full/max/0/default.tif');
    expect(slow.head.toString('latin1')).toMatch(/^HTTP\/1\.1 200/);

    const signalled = Date.now();
    server.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));

    // During the drain delay: the balancer's health check fails, but routed requests still work,
    // on new connections and on the kept-alive one, and each closes its connection.
    const health = await get(port, '/health');
    expect(health.status).toBe(503);
    expect(JSON.parse(health.body.toString())).toEqual({ status: 'draining' });
    expect(health.headers['cache-control']).toBe('no-store');
    const reused = await get(port, '/iiif/3/quadrants.png/full/100,/0/default.png', agent);
    expect(reused.status).toBe(200);
    expect(reused.socket).toBe(idleKeepAlive);
    expect(reused.headers.connection).toBe('close');
    expect((await sharp(reused.body).metadata()).width).toBe(100);

    // After the delay the listener is gone, yet the process stays up for the unread response.
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(await connectionRefused(port)).toBe(true);
    expect(server.child.exitCode).toBeNull();

    const received: Buffer[] = [slow.head];
    slow.socket.on('data', (chunk: Buffer) => received.push(chunk));
    slow.socket.resume();
    await once(slow.socket, 'close');
    const raw = Buffer.concat(received);
    const headerEnd = raw.indexOf('\r\n\r\n');
    const header = raw.subarray(0, headerEnd).toString('latin1');
    const length = Number(/content-length: (\d+)/i.exec(header)?.[1]);
    expect(length).toBeGreaterThan(15_000_000);
    expect(raw.length - headerEnd - 4).toBe(length);
    const image = await sharp(raw.subarray(headerEnd + 4)).metadata();
    expect([image.width, image.height]).toEqual([3000, 3000]);

    expect(await server.exited).toBe(0);
    const drainMs = Date.now() - signalled;
    const drained = server.logs.find((entry) => entry.msg === 'drained: exiting');
    expect(drained?.drainMs).toBeGreaterThanOrEqual(1500);
    console.log(`drain with one slow in-flight response: SIGTERM → exit 0 in ${drainMs} ms (server logged ${drained?.drainMs} ms)`);
    agent.destroy();
  });

  it('SIGINT drains the same way and exits 0', async () => {
    server = await startServerProcess({ IIIF_FILE_ROOT: root, IIIF_DRAIN_DELAY_MS: '300', IIIF_DRAIN_TIMEOUT_MS: '5000' });
    server.child.kill('SIGINT');
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect((await get(server.port, '/health')).status).toBe(503);
    expect(await server.exited).toBe(0);
    expect(server.logs.some((entry) => entry.msg === 'draining: /health now answers 503' && entry.signal === 'SIGINT')).toBe(true);
  });

  it('a second signal exits at once without waiting for the drain', async () => {
    server = await startServerProcess({ IIIF_FILE_ROOT: root, IIIF_DRAIN_DELAY_MS: '60000', IIIF_DRAIN_TIMEOUT_MS: '120000' });
    server.child.kill('SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect((await get(server.port, '/health')).status).toBe(503);
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(143);
  });

  it('past the drain timeout it exits 1 even while a response is still unread', async () => {
    server = await startServerProcess({ IIIF_FILE_ROOT: root, IIIF_DRAIN_DELAY_MS: '100', IIIF_DRAIN_TIMEOUT_MS: '1500' });
    const slow = await startSlowReader(server.port, '/iiif/3/noise.tif/full/max/0/default.tif');
    server.child.kill('SIGTERM');
    expect(await server.exited).toBe(1);
    expect(server.logs.some((entry) => entry.msg === 'drain timeout reached with requests still open: exiting')).toBe(true);
    slow.socket.destroy();
  });
});
