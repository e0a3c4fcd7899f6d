/**
 * The viewer in a real browser: Debian's Chromium (installed by scripts/system/chromium.sh),
 * driven by playwright-core, against the real server listening on 127.0.0.1. It follows the
 * index link to the viewer, lets OpenSeadragon load its tiles, zooms in twice, and checks from
 * the network log that deeper pyramid levels were fetched and that every tile came back 200.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { projectRoot } from '../../src/paths.js';
import { startServer, type RunningServer } from '../../src/server.js';
import { makeFixtures, quadrants } from '../fixtures.js';

// Generous: software-rendered headless Chromium on a busy 2-core machine is slow to paint tiles.
const LOAD_DEADLINE = 60_000;
const WIDTH = 4096;
const HEIGHT = 3072;
// OpenSeadragon's tile requests: /iiif/3/{identifier}/{x,y,w,h|full}/{w,|w,h}/0/default.jpg
const TILE = /\/iiif\/3\/[^/]+\/(full|\d+,\d+,(\d+),\d+)\/(\d+),\d*\/0\/default\.jpg$/;

interface TileResponse {
  url: string;
  status: number;
  /** Source pixels per output pixel: 1 at full resolution, 2, 4, … at the coarser levels. */
  scale: number;
}

let server: RunningServer;
let browser: Browser;

beforeAll(async () => {
  const { root } = await makeFixtures();
  await sharp(await quadrants())
    .resize(WIDTH, HEIGHT, { fit: 'fill', kernel: 'nearest' })
    .tiff({ tile: true, tileWidth: 256, tileHeight: 256, pyramid: true, compression: 'jpeg', quality: 85 })
    .toFile(join(root, 'big.tif'));
  server = await startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', IIIF_FILE_ROOT: root }), { logger: false });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
});

afterAll(async () => {
  await browser?.close();
  await server?.close();
});

/** Zooms by `factor` at once and waits until every tile the new view needs has arrived. */
async function zoomIn(page: Page, factor: number): Promise<void> {
  await page.evaluate((by) => {
    const w = globalThis as unknown as { viewer: OsdViewer; zoomLoaded: boolean };
    const item = w.viewer.world.getItemAt(0);
    // The new view needs new tiles, so the flag drops to false and rises again once they are in.
    const handler = (event: { fullyLoaded: boolean }) => {
      if (!event.fullyLoaded) return;
      w.zoomLoaded = true;
      item.removeHandler('fully-loaded-change', handler);
    };
    w.zoomLoaded = false;
    item.addHandler('fully-loaded-change', handler);
    w.viewer.viewport.zoomBy(by, undefined, true);
  }, factor);
  await page.waitForFunction(() => (globalThis as unknown as { zoomLoaded: boolean }).zoomLoaded, null, { timeout: LOAD_DEADLINE });
}

// The few parts of OpenSeadragon's API the test calls inside the page.
interface OsdViewer {
  /** The focusable element that takes keyboard input. */
  canvas: { focus(): void };
  world: {
    getItemCount(): number;
    getItemAt(i: number): {
      getFullyLoaded(): boolean;
      addHandler(event: string, handler: (event: { fullyLoaded: boolean }) => void): void;
      removeHandler(event: string, handler: (event: { fullyLoaded: boolean }) => void): void;
    };
  };
  viewport: { zoomBy(factor: number, point: undefined, immediately: boolean): void; getZoom(): number };
}

describe('the viewer in Chromium', () => {
  it('loads tiles, fetches deeper levels when zoomed in twice, every tile is 200, and the keyboard zooms', { timeout: 4 * LOAD_DEADLINE }, async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const tiles: TileResponse[] = [];
    const failures: string[] = [];
    page.on('response', (response) => {
      const match = TILE.exec(new URL(response.url()).pathname);
      if (!match) return;
      const regionWidth = match[1] === 'full' ? WIDTH : Number(match[2]);
      const scale = 2 ** Math.round(Math.log2(regionWidth / Number(match[3])));
      tiles.push({ url: response.url(), status: response.status(), scale });
    });
    // Only tiles count: leaving the index aborts its thumbnails, as it should.
    page.on('requestfailed', (request) => {
      if (TILE.test(new URL(request.url()).pathname)) failures.push(`${request.url()}: ${request.failure()?.errorText}`);
    });
    page.on('pageerror', (error) => failures.push(`page error: ${error.message}`));

    // Start at the index, as a person would, and follow the link.
    await page.goto(`http://127.0.0.1:${server.port}/`);
    await page.getByRole('link', { name: 'big.tif' }).click();
    await page.waitForURL(/\/viewer\/big\.tif$/);
    await page.waitForFunction(
      () => {
        const viewer = (globalThis as unknown as { viewer?: OsdViewer }).viewer;
        return viewer !== undefined && viewer.world.getItemCount() > 0 && viewer.world.getItemAt(0).getFullyLoaded();
      },
      null,
      { timeout: LOAD_DEADLINE },
    );
    const finest = () => Math.min(...tiles.map((tile) => tile.scale));
    expect(tiles.length).toBeGreaterThan(0);
    const initial = finest();

    await zoomIn(page, 2);
    const afterFirst = finest();
    await zoomIn(page, 2);
    const afterSecond = finest();

    await mkdir(join(projectRoot(), 'test-output'), { recursive: true });
    await page.screenshot({ path: join(projectRoot(), 'test-output', 'viewer.png') });

    // Keyboard use: the image takes focus and "-" zooms out.
    const zoom = () => page.evaluate(() => (globalThis as unknown as { viewer: OsdViewer }).viewer.viewport.getZoom());
    const before = await zoom();
    await page.evaluate(() => (globalThis as unknown as { viewer: OsdViewer }).viewer.canvas.focus());
    await page.keyboard.press('-');
    // OpenSeadragon applies held keys frame by frame: wait for the zoom to move.
    await page.waitForFunction(
      (start) => (globalThis as unknown as { viewer: OsdViewer }).viewer.viewport.getZoom() < start,
      before,
      { timeout: LOAD_DEADLINE },
    );
    const afterKey = await zoom();
    await page.close();

    expect(failures).toEqual([]);
    expect(tiles.filter((tile) => tile.status !== 200)).toEqual([]);
    expect(afterFirst).toBeLessThan(initial);
    expect(afterSecond).toBe(1); // zoomed 4× from the fitted view: full-resolution tiles
    expect(new Set(tiles.map((tile) => tile.scale)).size).toBeGreaterThanOrEqual(3);
    expect(afterKey).toBeLessThan(before);
  });
});
