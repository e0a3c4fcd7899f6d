import { mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { ConfigError } from '../../src/errors.js';
import { quadrants } from '../fixtures.js';
import { s3App, type S3App } from './s3-app.js';
import { S3Store } from './s3-store.js';

// What a hostile client can make the S3 source do: every request it sends must cost S3 (and
// the disk) a bounded amount, and no identifier may reach a key outside the prefix.

let store: S3Store;
beforeAll(async () => {
  store = await S3Store.start();
  const chart = await quadrants();
  await store.put('iiif/chart.png', chart);
  await store.put('iiif-private/secret.png', chart);
});
afterAll(() => store.close());

const apps: S3App[] = [];
afterEach(async () => {
  await Promise.all(apps.splice(0).map((a) => a.app.close()));
});

async function open(env: Record<string, string>): Promise<S3App & { cacheDir: string }> {
  const cacheDir = await mkdtemp(join(tmpdir(), 'iiif-cache-'));
  const app = await s3App(store, cacheDir, { IIIF_S3_PREFIX: 'iiif/', ...env });
  apps.push(app);
  return { ...app, cacheDir };
}

const lists = () => store.requests.filter((r) => r.method === 'GET' && r.key === '').length;

describe('S3 source under hostile load', () => {
  it('500 distinct missing identifiers make at most the burst (plus the refill) of GETs; the rest get 503 + Retry-After', async () => {
    const s3 = await open({ IIIF_S3_MISS_RATE: '1', IIIF_S3_MISS_BURST: '20' });
    const before = store.gets();
    const started = performance.now();
    const responses = [];
    for (let batch = 0; batch < 10; batch++) {
      responses.push(...(await Promise.all(Array.from({ length: 50 }, (_, i) => s3.app.inject(`/iiif/3/missing-${batch}-${i}.jpg/info.json`)))));
    }
    const seconds = (performance.now() - started) / 1000;
    const gets = store.gets() - before;
    expect(gets).toBeLessThanOrEqual(20 + Math.ceil(seconds * 1) + 1);
    const statuses = responses.map((r) => r.statusCode);
    expect(statuses.filter((s) => s === 404).length).toBe(gets);
    for (const response of responses.filter((r) => r.statusCode === 503)) expect(Number(response.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    expect(statuses.every((s) => s === 404 || s === 503)).toBe(true);
    expect(await s3.metric('iiif_source_miss_rejections_total')).toBe(500 - gets);
    // Each of those GETs made and deleted a temporary file; none is left behind.
    expect((await readdir(s3.cacheDir)).filter((name) => name.startsWith('.tmp-'))).toEqual([]);
  });

  it('one client probing made-up identifiers gets 429 past its share, before S3 is asked; another client still reaches a new image', async () => {
    const s3 = await open({ IIIF_TRUST_PROXY: 'true', IIIF_CLIENT_MISS_RATE: '1', IIIF_CLIENT_MISS_BURST: '5', IIIF_S3_MISS_RATE: '1', IIIF_S3_MISS_BURST: '10' });
    const before = store.gets();
    const started = performance.now();
    const responses = [];
    for (let i = 0; i < 50; i++) {
      // The load balancer appends the prober's address; what the prober wrote before it varies and must not matter.
      responses.push(await s3.app.inject({ url: `/iiif/3/probe-${i}.jpg/info.json`, headers: { 'x-forwarded-for': `10.0.0.${i}, 203.0.113.7` } }));
    }
    const seconds = (performance.now() - started) / 1000;
    const notFound = responses.filter((r) => r.statusCode === 404).length;
    expect(notFound).toBeGreaterThanOrEqual(5);
    expect(notFound).toBeLessThanOrEqual(5 + Math.ceil(seconds) + 1);
    // Only the 404s reached S3; the refusals cost it nothing.
    expect(store.gets() - before).toBe(notFound);
    for (const refused of responses.filter((r) => r.statusCode !== 404)) {
      expect(refused.statusCode).toBe(429);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    }
    // The budget of first fetches shared by all clients (10) is not used up by the prober.
    const other = await s3.app.inject({ url: '/iiif/3/chart.png/info.json', headers: { 'x-forwarded-for': '198.51.100.9' } });
    expect(other.statusCode).toBe(200);
    expect(await s3.metric('iiif_source_miss_rejections_total')).toBe(0);
  });

  it('a remembered 404 and a cached image cost no token', async () => {
    const s3 = await open({ IIIF_S3_MISS_RATE: '1', IIIF_S3_MISS_BURST: '2' });
    expect((await s3.app.inject('/iiif/3/chart.png/info.json')).statusCode).toBe(200);
    expect((await s3.app.inject('/iiif/3/gone.png/info.json')).statusCode).toBe(404);
    for (let i = 0; i < 20; i++) {
      expect((await s3.app.inject('/iiif/3/chart.png/full/64,/0/default.jpg')).statusCode).toBe(200);
      expect((await s3.app.inject('/iiif/3/gone.png/info.json')).statusCode).toBe(404);
    }
    expect(await s3.metric('iiif_source_miss_rejections_total')).toBe(0);
  });

  it('50 index pages make one LIST call', async () => {
    const s3 = await open({});
    const before = lists();
    const pages = await Promise.all(Array.from({ length: 25 }, () => s3.app.inject('/')));
    for (let i = 0; i < 25; i++) pages.push(await s3.app.inject('/'));
    for (const page of pages) {
      expect(page.statusCode).toBe(200);
      expect(page.body).toContain('chart.png');
    }
    expect(lists() - before).toBe(1);
  });

  it('an identifier cannot reach a key beside the prefix', async () => {
    const s3 = await open({});
    // "iiif" + "-private/secret.png" was "iiif-private/secret.png"; with the prefix a folder it is "iiif/-private/secret.png".
    const response = await s3.app.inject('/iiif/3/-private%2Fsecret.png/info.json');
    expect(response.statusCode).toBe(404);
    expect(store.gets('iiif-private/secret.png')).toBe(0);
    expect(store.gets('iiif/-private/secret.png')).toBe(1);
  });

  it('refuses at start a prefix that does not end with "/"', () => {
    const attempt = () => loadConfig({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: 'images', IIIF_S3_PREFIX: 'iiif' });
    expect(attempt).toThrow(ConfigError);
    expect(attempt).toThrow(/IIIF_S3_PREFIX must be empty or end with "\/"/);
    expect(loadConfig({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: 'images', IIIF_S3_PREFIX: 'iiif/' }).s3?.prefix).toBe('iiif/');
  });
});
