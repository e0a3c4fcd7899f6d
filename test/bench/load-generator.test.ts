import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import autocannon from '../../bench/load-generator.js';

// Bytes that are not UTF-8, like a JPEG's: what autocannon used to decode into a string.
const body = Buffer.from(Array.from({ length: 9000 }, (_, i) => (i * 167) % 256));
let url: string;
let served = 0;
const server = createServer((_request, response) => {
  served++;
  response.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': body.length }).end(body);
});
beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

describe('the benchmarks’ load generator', () => {
  it('still counts every response and its bytes without keeping the bodies', async () => {
    const result = await autocannon({ url, connections: 4, amount: 200, sampleInt: 20, requests: [{ method: 'GET', path: '/a' }, { method: 'GET', path: '/b' }] });
    expect(result.requests.total).toBe(200);
    expect(served).toBe(200);
    expect(result['2xx']).toBe(200);
    expect(result.non2xx + result.errors).toBe(0);
    expect(result.throughput.total).toBeGreaterThanOrEqual(200 * body.length);
  });

  it('does not decode bodies into strings (what cost it more CPU than a hot tile costs the server)', async () => {
    const seen: unknown[] = [];
    await autocannon({ url, connections: 1, amount: 3, sampleInt: 20, requests: [{ method: 'GET', path: '/c', onResponse: (_status, received) => void seen.push(received) }] });
    expect(seen).toEqual(['', '', '']);
  });
});
