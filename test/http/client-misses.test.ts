import type { FastifyInstance } from 'fastify';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makeFixtures } from '../fixtures.js';
import { appFor } from './helpers.js';

// Requests for identifiers that do not exist, counted per client address (src/http/client-misses.ts).

let root: string;
let app: FastifyInstance | undefined;
beforeAll(async () => {
  ({ root } = await makeFixtures());
});
afterEach(async () => {
  await app?.close();
  app = undefined;
});

const LIMITS = { IIIF_CLIENT_MISS_RATE: '1', IIIF_CLIENT_MISS_BURST: '3' };
const probe = (i: number, from: { forwardedFor?: string; remoteAddress?: string } = {}) =>
  app!.inject({
    url: `/iiif/3/made-up-${i}.jpg/info.json`,
    remoteAddress: from.remoteAddress,
    headers: from.forwardedFor ? { 'x-forwarded-for': from.forwardedFor } : {},
  });

describe('unknown identifiers per client', () => {
  it('past the burst a client gets 429 with Retry-After and a coded message; its known images still load, other clients are untouched', async () => {
    app = await appFor(root, LIMITS);
    for (let i = 0; i < 3; i++) expect((await probe(i, { remoteAddress: '192.0.2.1' })).statusCode).toBe(404);
    const refused = await probe(3, { remoteAddress: '192.0.2.1' });
    expect(refused.statusCode).toBe(429);
    expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(refused.body).toMatch(/do not exist; retry later/);
    // Until its share refills the client is refused whatever it asks for: telling a known image
    // from an unknown one is the lookup the limit exists to save.
    expect((await app.inject({ url: '/iiif/3/quadrants.png/info.json', remoteAddress: '192.0.2.1' })).statusCode).toBe(429);
    expect((await probe(4, { remoteAddress: '192.0.2.2' })).statusCode).toBe(404);
    expect((await app.inject({ url: '/iiif/3/quadrants.png/info.json', remoteAddress: '192.0.2.2' })).statusCode).toBe(200);
  });

  it('without IIIF_TRUST_PROXY, X-Forwarded-For does not make a new client', async () => {
    app = await appFor(root, LIMITS);
    for (let i = 0; i < 3; i++) expect((await probe(i, { forwardedFor: `198.51.100.${i}` })).statusCode).toBe(404);
    expect((await probe(3, { forwardedFor: '198.51.100.99' })).statusCode).toBe(429);
  });

  it('with IIIF_TRUST_PROXY the client is the address the proxy appended, not one the client wrote', async () => {
    app = await appFor(root, { ...LIMITS, IIIF_TRUST_PROXY: 'true' });
    for (let i = 0; i < 3; i++) expect((await probe(i, { forwardedFor: `10.9.9.${i}, 203.0.113.7` })).statusCode).toBe(404);
    expect((await probe(3, { forwardedFor: '10.9.9.200, 203.0.113.7' })).statusCode).toBe(429);
    expect((await probe(4, { forwardedFor: '203.0.113.8' })).statusCode).toBe(404);
  });

  it('IIIF_CLIENT_MISS_RATE=0 turns the limit off', async () => {
    app = await appFor(root, { IIIF_CLIENT_MISS_RATE: '0', IIIF_CLIENT_MISS_BURST: '1' });
    for (let i = 0; i < 20; i++) expect((await probe(i)).statusCode).toBe(404);
  });
});
