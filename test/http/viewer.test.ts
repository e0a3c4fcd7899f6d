import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { buildApp } from '../../src/http/app.js';
import { createRuntime } from '../../src/runtime.js';
import { FolderSource } from '../../src/source/folder.js';
import { makeFixtures } from '../fixtures.js';
import { appFor } from './helpers.js';

const HOSTILE = `"><img src=x onerror=alert(1)>'.png`;

let root: string;
let app: FastifyInstance;
beforeAll(async () => {
  ({ root } = await makeFixtures());
  await writeFile(join(root, HOSTILE), 'x');
  app = await appFor(root);
});
afterAll(() => app.close());

/** Every href and src in a page, resolved against the page's own URL as a browser would. */
function links(html: string, pageUrl: string): string[] {
  return [...html.matchAll(/(?:href|src)="([^"]*)"/g)].map((match) => {
    const url = new URL(match[1]!.replaceAll('&amp;', '&'), `http://host${pageUrl}`);
    return url.pathname + url.search;
  });
}

describe('the index page', () => {
  it('lists the images, each linking to its viewer, as accessible HTML', async () => {
    const response = await app.inject('/');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('text/html; charset=utf-8');
    const html = response.body;
    expect(html).toMatch(/^<!doctype html>\n<html lang="en">/);
    expect(html).toContain('<title>Images · iiif-elastic</title>');
    expect(html).toContain('<h1>Images</h1>');
    expect(html).toContain('<a href="viewer/deep%2Fdir%2Fchart.png">');
    expect(html).toContain('<a href="viewer/name%20with%20spaces%20%26%20%C3%BC.png">');
    expect(html).toContain('<span>name with spaces &amp; ü.png</span>');
    // Every thumbnail has an alt attribute (empty: the link text names the image).
    expect(html.match(/<img /g)!.length).toBe(html.match(/<img [^>]*alt=""/g)!.length);
    // Files that are not images, and the symlink out of the root, are not listed.
    expect(html).not.toContain('noext');
    expect(html).not.toContain('escape.png');
  });

  it('escapes hostile file names in text, attributes and URLs', async () => {
    const html = (await app.inject('/')).body;
    expect(html).not.toContain('<img src=x');
    expect(html).toContain('<span>&quot;&gt;&lt;img src=x onerror=alert(1)&gt;&#39;.png</span>');
    expect(html).toContain(`<a href="viewer/${encodeURIComponent(HOSTILE).replaceAll("'", '&#39;')}">`);
    const page = await app.inject(`/viewer/${encodeURIComponent(HOSTILE)}`);
    // The file is not a real image (422), and the message quoting the name is escaped too.
    expect(page.statusCode).toBe(422);
    expect(page.body).not.toContain('<img src=x');
  });

  it('shows at most IIIF_LIST_LIMIT images and says the list was cut', async () => {
    const limited = await appFor(root, { IIIF_LIST_LIMIT: '2' });
    const html = (await limited.inject('/')).body;
    await limited.close();
    expect(html).toContain('The first 2 images');
    expect(html.match(/<li>/g)).toHaveLength(2);
  });

  it('says so when the source cannot list its images', async () => {
    const folder = await FolderSource.open(root);
    const runtime = await createRuntime(loadConfig({ IIIF_FILE_ROOT: root }), { source: { resolve: (id) => folder.resolve(id) } });
    const unlisted = buildApp(runtime, { logger: false });
    const response = await unlisted.inject('/');
    await unlisted.close();
    expect(response.statusCode).toBe(200);
    expect(response.body).toContain('cannot list its images');
  });
});

describe('the viewer page', () => {
  it('opens OpenSeadragon on the IIIF 3 tile source by relative URLs', async () => {
    const response = await app.inject('/viewer/deep%2Fdir%2Fchart.png');
    expect(response.statusCode).toBe(200);
    const html = response.body;
    expect(html).toContain('<title>deep/dir/chart.png · iiif-elastic</title>');
    expect(html).toContain('<h1>deep/dir/chart.png</h1>');
    expect(html).toContain('400 × 200 pixels');
    expect(html).toContain('data-info="../iiif/3/deep%2Fdir%2Fchart.png/info.json"');
    expect(html).toContain('aria-label="Zoomable image: deep/dir/chart.png"');
    expect(html).not.toMatch(/(?:src|href)="(?:https?:)?\/\//); // nothing from another host
  });

  it('links only to things the server itself answers with 200', async () => {
    const pageUrl = '/viewer/deep%2Fdir%2Fchart.png';
    const targets = links((await app.inject(pageUrl)).body, pageUrl);
    expect(targets).toEqual(
      expect.arrayContaining(['/', '/viewer-assets/viewer.css', '/viewer-assets/openseadragon.min.js', '/viewer-assets/viewer.js', '/iiif/3/deep%2Fdir%2Fchart.png/info.json']),
    );
    const indexTargets = links((await app.inject('/')).body, '/').filter((url) => url.includes('quadrants'));
    for (const url of [...targets, ...indexTargets]) {
      expect({ url, status: (await app.inject(url)).statusCode }).toEqual({ url, status: 200 });
    }
  });

  it.each([
    ['/viewer/missing.png', 404],
    ['/viewer/deep/dir/chart.png', 404],
    ['/viewer/..%2Foutside%2Fsecret.png', 404],
    ['/viewer/escape.png', 404],
    ['/viewer/', 404],
    ['/viewer/corrupt.jpg', 422],
  ])('answers %s with %i as an HTML page linking back to the index', async (url, status) => {
    const response = await app.inject(url);
    expect(response.statusCode).toBe(status);
    expect(response.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(response.body).toContain(`<h1>Error ${status}</h1>`);
    expect(links(response.body, url)).toContain('/');
  });

  it('answers a malformed %-escape with 400 before any page is looked for', async () => {
    expect((await app.inject('/viewer/%E0%A4%A')).statusCode).toBe(400);
  });
});

describe('viewer assets', () => {
  it('serves OpenSeadragon from the npm package with its type and cache headers, and revalidates', async () => {
    const response = await app.inject('/viewer-assets/openseadragon.min.js');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('text/javascript; charset=utf-8');
    expect(response.headers['cache-control']).toBe('public, max-age=3600');
    expect(response.body).toContain('OpenSeadragon');
    const again = await app.inject({ url: '/viewer-assets/openseadragon.min.js', headers: { 'if-none-match': String(response.headers.etag) } });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
  });

  it('serves the button images as PNG', async () => {
    const response = await app.inject('/viewer-assets/openseadragon/images/zoomin_rest.png');
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toBe('image/png');
    expect(response.rawPayload.subarray(0, 4)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47]));
  });

  it.each([
    '/viewer-assets/..%2F..%2Fpackage.json',
    '/viewer-assets/../package.json',
    '/viewer-assets/openseadragon/images/..%2F..%2Fopenseadragon.js',
    '/viewer-assets/%2Fetc%2Fpasswd',
    '/viewer-assets/',
  ])('refuses %s with 404', async (url) => {
    expect((await app.inject(url)).statusCode).toBe(404);
  });
});
