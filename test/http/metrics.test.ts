import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { makeFixtures } from '../fixtures.js';
import { appFor } from './helpers.js';

let app: FastifyInstance;
beforeAll(async () => {
  app = await appFor((await makeFixtures()).root);
});
afterAll(() => app.close());

describe('/metrics', () => {
  it('exposes process metrics and request latency by route kind and status class, never by identifier', async () => {
    await app.inject('/iiif/3/quadrants.png/info.json');
    await app.inject('/iiif/3/quadrants.png/full/100,/0/default.webp');
    await app.inject('/iiif/3/missing.png/full/100,/0/default.webp');
    const response = await app.inject('/metrics');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain; version=0.0.4/);
    const text = response.body;
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^http_request_duration_seconds_count\{route="info",method="GET",status_class="2xx"\} 1$/m);
    expect(text).toMatch(/^http_request_duration_seconds_count\{route="image",method="GET",status_class="2xx"\} 1$/m);
    expect(text).toMatch(/^http_request_duration_seconds_count\{route="image",method="GET",status_class="4xx"\} 1$/m);
    expect(text).toMatch(/^iiif_render_seconds_count\{format="webp"\} 1$/m);
    expect(text).toMatch(/^iiif_requests_in_flight 1$/m); // the /metrics request itself
    expect(text).not.toContain('quadrants');
  });
});
