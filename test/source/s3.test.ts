import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BLUE, GREEN, near, pixel, quadrants, RED, YELLOW } from '../fixtures.js';
import { s3App } from './s3-app.js';
import { S3Store } from './s3-store.js';

let store: S3Store;
let chart: Buffer;
beforeAll(async () => {
  store = await S3Store.start();
  chart = await quadrants();
  await store.put('chart.png', chart);
});
afterAll(() => store.close());

const freshDir = () => mkdtemp(join(tmpdir(), 'iiif-cache-'));

describe('S3 source', () => {
  it('serves tiles with the right pixels', async () => {
    const { app } = await s3App(store, await freshDir());
    const response = await app.inject('/iiif/3/chart.png/full/max/0/default.png');
    expect(response.statusCode).toBe(200);
    const body = response.rawPayload;
    expect(near(await pixel(body, 10, 10), RED)).toBe(true);
    expect(near(await pixel(body, 390, 10), GREEN)).toBe(true);
    expect(near(await pixel(body, 10, 190), BLUE)).toBe(true);
    expect(near(await pixel(body, 390, 190), YELLOW)).toBe(true);
    await app.close();
  });
});
