import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { pacedLoad } from '../../bench/paced-load.js';

let server: Server | undefined;
afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())));

/** A server that answers after `delayMs`, 404 for /missing, and records when each request arrived. */
async function start(delayMs: number): Promise<{ url: string; arrivals: number[] }> {
  const arrivals: number[] = [];
  server = createServer((request, response) => {
    arrivals.push(performance.now());
    setTimeout(() => response.writeHead(request.url === '/missing' ? 404 : 200).end('x'), delayMs);
  });
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, arrivals };
}

describe('paced load (the capacity measurement’s load generator)', () => {
  it('never sends a request before its moment: request i leaves no earlier than i / rate', async () => {
    const { url, arrivals } = await start(0);
    const before = performance.now();
    const result = await pacedLoad(url, 200, 1, () => '/', 5000);
    expect(result).toMatchObject({ requests: 200, errors: 0, non2xx: 0 });
    expect(arrivals).toHaveLength(200);
    // A lower bound only, so a busy machine (which makes requests late, never early) cannot
    // fail it; a burst would have delivered nearly all 200 within the first few milliseconds.
    const early = [...arrivals].sort((a, b) => a - b).filter((at, i) => at - before < (i * 1000) / 200);
    expect(early).toEqual([]);
  });

  it('counts latency from the scheduled moment, non-2xx answers and failed connections', async () => {
    const { url } = await start(60);
    const paths = ['/', '/missing'];
    let next = 0;
    const slow = await pacedLoad(url, 50, 0.4, () => paths[next++ % 2]!, 5000);
    expect(slow.requests).toBe(20);
    expect(slow.non2xx).toBe(10);
    expect(slow.p99Ms).toBeGreaterThanOrEqual(60);
    await new Promise<void>((resolve) => server!.close(() => resolve()));
    server = undefined;
    const refused = await pacedLoad(url, 20, 0.25, () => '/', 1000);
    expect(refused.errors).toBe(5);
  });

  it('reports latency per group of paths, as well as over all of them', async () => {
    const { url } = await start(0);
    const paths = ['/', '/', '/', '/missing'];
    let next = 0;
    const result = await pacedLoad(url, 100, 0.4, () => paths[next++ % 4]!, 5000, (path) => (path === '/missing' ? 'missing' : 'found'));
    expect(Object.keys(result.groups).sort()).toEqual(['found', 'missing']);
    expect(result.groups.found!.requests).toBe(30);
    expect(result.groups.missing!.requests).toBe(10);
    expect(result.maxMs).toBe(Math.max(result.groups.found!.maxMs, result.groups.missing!.maxMs));
  });
});
