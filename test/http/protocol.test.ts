import type { FastifyInstance } from 'fastify';
import fc from 'fast-check';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeFixtures } from '../fixtures.js';
import { appFor } from './helpers.js';

let root: string;
let app: FastifyInstance;

beforeAll(async () => {
  ({ root } = await makeFixtures());
  app = await appFor(root);
});
afterAll(() => app.close());

const get = (url: string, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url, headers });

describe('health', () => {
  it('answers 200 {"status":"ok"} without caching', async () => {
    const response = await get('/health');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ok' });
    expect(response.headers['cache-control']).toBe('no-store');
  });
});

describe('info.json', () => {
  it('id is the URL the client used', async () => {
    const response = await get('/iiif/3/quadrants.png/info.json', { host: 'images.example.org:8080' });
    expect(response.json().id).toBe('http://images.example.org:8080/iiif/3/quadrants.png');
    const v2 = await get('/iiif/2/quadrants.png/info.json', { host: 'images.example.org' });
    expect(v2.json()['@id']).toBe('http://images.example.org/iiif/2/quadrants.png');
  });

  it('ignores X-Forwarded-* unless the proxy is trusted, and X-Forwarded-Host unless it is listed', async () => {
    const headers = { host: 'internal:3000', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'public.example.org' };
    expect((await get('/iiif/3/quadrants.png/info.json', headers)).json().id).toBe('http://internal:3000/iiif/3/quadrants.png');
    const trusting = await appFor(root, { IIIF_TRUST_PROXY: 'true' });
    const listing = await appFor(root, { IIIF_TRUST_PROXY: 'true', IIIF_PUBLIC_HOSTS: 'images.example.org, public.example.org' });
    try {
      // Trusted: the scheme is honoured; the host stays the one every cache keys on.
      expect((await trusting.inject({ url: '/iiif/3/quadrants.png/info.json', headers })).json().id).toBe('https://internal:3000/iiif/3/quadrants.png');
      expect((await listing.inject({ url: '/iiif/3/quadrants.png/info.json', headers })).json().id).toBe('https://public.example.org/iiif/3/quadrants.png');
    } finally {
      await Promise.all([trusting.close(), listing.close()]);
    }
  });

  it('X-Forwarded-Host from a client never reaches id, Link or Location (cache poisoning behind an ALB)', async () => {
    const hostile = { host: 'images.example.org', 'x-forwarded-proto': 'https', 'x-forwarded-host': 'attacker.example' };
    const requests = ['/iiif/3/quadrants.png/info.json', '/iiif/2/quadrants.png/info.json', '/iiif/3/quadrants.png/full/64,/0/default.jpg', '/iiif/3/quadrants.png'];
    const settings: Array<Record<string, string>> = [{ IIIF_TRUST_PROXY: 'true' }, { IIIF_TRUST_PROXY: 'true', IIIF_PUBLIC_HOSTS: 'images.example.org' }];
    for (const env of settings) {
      const app = await appFor(root, env);
      try {
        for (const url of requests) {
          const response = await app.inject({ url, headers: hostile });
          expect(response.statusCode).toBeLessThan(400);
          const exposed = [response.headers.link, response.headers.location, response.headers['content-type']?.toString().includes('json') ? response.body : ''].join(' ');
          expect(exposed).not.toContain('attacker');
          expect(exposed).toContain('https://images.example.org/iiif/');
        }
      } finally {
        await app.close();
      }
    }
  });

  it('with IIIF_PUBLIC_HOSTS, a request for an unlisted host gets the first listed one', async () => {
    const app = await appFor(root, { IIIF_PUBLIC_HOSTS: 'images.example.org,alias.example.org:8443' });
    try {
      const id = async (host: string) => (await app.inject({ url: '/iiif/3/quadrants.png/info.json', headers: { host } })).json().id;
      expect(await id('alias.example.org:8443')).toBe('http://alias.example.org:8443/iiif/3/quadrants.png');
      expect(await id('IMAGES.example.org')).toBe('http://images.example.org/iiif/3/quadrants.png');
      expect(await id('attacker.example')).toBe('http://images.example.org/iiif/3/quadrants.png');
      expect(await id('evil"><script>')).toBe('http://images.example.org/iiif/3/quadrants.png');
    } finally {
      await app.close();
    }
  });

  it('IIIF_BASE_URL overrides scheme, host and adds its path prefix', async () => {
    const configured = await appFor(root, { IIIF_BASE_URL: 'https://cdn.example.org/images/' });
    try {
      const response = await configured.inject({ url: '/iiif/3/deep%2Fdir%2Fchart.png/info.json', headers: { host: 'x' } });
      expect(response.json().id).toBe('https://cdn.example.org/images/iiif/3/deep%2Fdir%2Fchart.png');
    } finally {
      await configured.close();
    }
  });

  it('rejects a Host header that could break headers or URLs', async () => {
    const response = await get('/iiif/3/quadrants.png/info.json', { host: 'evil"><script>' });
    expect(response.statusCode).toBe(400);
  });

  it('is plain JSON by default and JSON-LD when asked', async () => {
    const plain = await get('/iiif/3/quadrants.png/info.json');
    expect(plain.headers['content-type']).toBe('application/json; charset=utf-8');
    expect(plain.headers.link).toContain('<http://iiif.io/api/image/3/context.json>;rel="http://www.w3.org/ns/json-ld#context"');
    const ld = await get('/iiif/3/quadrants.png/info.json', { accept: 'application/ld+json' });
    expect(ld.headers['content-type']).toBe('application/ld+json;profile="http://iiif.io/api/image/3/context.json"; charset=utf-8');
    expect(ld.headers.link).not.toContain('json-ld#context');
    const preferPlain = await get('/iiif/3/quadrants.png/info.json', { accept: 'application/ld+json;q=0.5, application/json' });
    expect(preferPlain.headers['content-type']).toBe('application/json; charset=utf-8');
    const v2 = await get('/iiif/2/quadrants.png/info.json', { accept: 'application/ld+json' });
    expect(v2.headers['content-type']).toContain('profile="http://iiif.io/api/image/2/context.json"');
    expect(plain.headers.vary).toBe('Accept');
  });

  it('carries CORS, profile link, ETag and Cache-Control, and answers 304', async () => {
    const response = await get('/iiif/3/quadrants.png/info.json');
    expect(response.headers['access-control-allow-origin']).toBe('*');
    expect(response.headers.link).toContain('<http://iiif.io/api/image/3/level2.json>;rel="profile"');
    expect(response.headers['cache-control']).toMatch(/^public, max-age=\d+$/);
    const etag = response.headers.etag as string;
    expect(etag).toMatch(/^"[\w-]+"$/);
    const again = await get('/iiif/3/quadrants.png/info.json', { 'if-none-match': etag });
    expect(again.statusCode).toBe(304);
    expect(again.body).toBe('');
    expect(again.headers['access-control-allow-origin']).toBe('*');
    // A different representation (JSON-LD) has a different tag.
    const ld = await get('/iiif/3/quadrants.png/info.json', { accept: 'application/ld+json', 'if-none-match': etag });
    expect(ld.statusCode).toBe(200);
  });

  it('HEAD gives the headers and length without a body', async () => {
    const full = await get('/iiif/3/quadrants.png/info.json');
    const head = await app.inject({ method: 'HEAD', url: '/iiif/3/quadrants.png/info.json' });
    expect(head.statusCode).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-length']).toBe(String(full.rawPayload.length));
    expect(head.headers.etag).toBe(full.headers.etag);
  });
});

describe('base URI', () => {
  it('redirects with 303 to info.json', async () => {
    const response = await get('/iiif/3/deep%2Fdir%2Fchart.png', { host: 'h.example' });
    expect(response.statusCode).toBe(303);
    expect(response.headers.location).toBe('http://h.example/iiif/3/deep%2Fdir%2Fchart.png/info.json');
    expect((await app.inject({ method: 'HEAD', url: '/iiif/2/quadrants.png' })).statusCode).toBe(303);
  });

  it('is 404 for an unknown identifier', async () => {
    expect((await get('/iiif/3/nothing-here')).statusCode).toBe(404);
  });
});

describe('image responses', () => {
  const url = '/iiif/3/quadrants.png/pct:0,0,50,50/!50,50/0/gray.webp';

  it('carry CORS, the profile and canonical links, ETag, Last-Modified and Cache-Control', async () => {
    const response = await get(url, { host: 'h.example' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['access-control-allow-origin']).toBe('*');
    expect(response.headers.link).toBe(
      '<http://iiif.io/api/image/3/level2.json>;rel="profile", <http://h.example/iiif/3/quadrants.png/0,0,200,100/50,25/0/gray.webp>;rel="canonical"',
    );
    expect(response.headers['last-modified']).toMatch(/GMT$/);
    expect(response.headers['cache-control']).toMatch(/^public, max-age=/);
  });

  it('answer 304 to a matching If-None-Match (weak or in a list) and If-Modified-Since', async () => {
    const first = await get(url);
    const etag = first.headers.etag as string;
    for (const header of [etag, `W/${etag}`, `"nope", ${etag}`, '*']) {
      const response = await get(url, { 'if-none-match': header });
      expect(response.statusCode, header).toBe(304);
      expect(response.rawPayload.length).toBe(0);
    }
    expect((await get(url, { 'if-none-match': '"stale"' })).statusCode).toBe(200);
    expect((await get(url, { 'if-modified-since': first.headers['last-modified'] as string })).statusCode).toBe(304);
    expect((await get(url, { 'if-modified-since': 'Thu, 01 Jan 1970 00:00:00 GMT' })).statusCode).toBe(200);
  });

  it('equivalent requests share an ETag; different ones do not', async () => {
    const a = await get('/iiif/3/quadrants.png/full/max/0/default.jpg');
    const b = await get('/iiif/3/quadrants.png/0,0,400,200/400,/0/default.jpg');
    const c = await get('/iiif/3/quadrants.png/full/max/0/default.png');
    expect(a.headers.etag).toBe(b.headers.etag);
    expect(a.headers.etag).not.toBe(c.headers.etag);
  });

  it('HEAD answers with the headers of GET and no body', async () => {
    const head = await app.inject({ method: 'HEAD', url });
    const full = await get(url);
    expect(head.statusCode).toBe(200);
    expect(head.rawPayload.length).toBe(0);
    for (const name of ['content-type', 'etag', 'link', 'access-control-allow-origin']) {
      expect(head.headers[name], name).toBe(full.headers[name]);
    }
    expect((await app.inject({ method: 'HEAD', url: '/iiif/3/quadrants.png/full/max/0/default.bmp' })).statusCode).toBe(400);
  });

  it('answers a CORS preflight', async () => {
    const response = await app.inject({ method: 'OPTIONS', url });
    expect(response.statusCode).toBe(204);
    expect(response.headers['access-control-allow-origin']).toBe('*');
    expect(response.headers['access-control-allow-methods']).toContain('GET');
  });
});

describe('identifiers', () => {
  it('decodes %2F into sub-folders, once', async () => {
    expect((await get('/iiif/3/deep%2Fdir%2Fchart.png/info.json')).statusCode).toBe(200);
    expect((await get('/iiif/3/deep%2fdir%2fchart.png/full/max/0/default.jpg')).statusCode).toBe(200);
    // Double-encoded: decodes once to the literal name "deep%2Fdir%2Fchart.png", which does not exist.
    expect((await get('/iiif/3/deep%252Fdir%252Fchart.png/info.json')).statusCode).toBe(404);
  });

  it('an unencoded slash makes an extra segment: 404, not 400', async () => {
    expect((await get('/iiif/3/deep/dir/chart.png/info.json')).statusCode).toBe(404);
    expect((await get('/iiif/3/deep/dir/chart.png/full/max/0/default.jpg')).statusCode).toBe(404);
  });

  it('sniffs the format, so a file without an extension works', async () => {
    const response = await get('/iiif/3/noext/full/max/0/default.png');
    expect(response.statusCode).toBe(200);
    expect((await sharp(response.rawPayload).metadata()).width).toBe(400);
  });

  it('tries the usual extensions when the exact name is missing', async () => {
    expect((await get('/iiif/3/chart/info.json')).json().width).toBe(400);
  });

  it('serves names with spaces and non-ASCII characters', async () => {
    expect((await get(`/iiif/3/${encodeURIComponent('name with spaces & ü.png')}/info.json`)).statusCode).toBe(200);
  });

  it('serves long identifiers (beyond fastify’s default 100-character parameter limit)', async () => {
    const long = `${'a'.repeat(150)}`;
    expect((await get(`/iiif/3/${long}/info.json`)).statusCode).toBe(404);
    const response = await get(`/iiif/3/${long}/full/max/0/default.jpg`);
    expect(response.body).toContain('no image with identifier');
  });

  it.each([
    '..%2F..%2F..%2Fetc%2Fpasswd',
    '%2E%2E%2Foutside%2Fsecret.png',
    '..%2Foutside%2Fsecret.png',
    '%2Fetc%2Fpasswd',
    'deep%2F..%2F..%2Foutside%2Fsecret.png',
    'quadrants.png%00.jpg',
    '..%5Coutside%5Csecret.png',
    'deep%5Cdir%5Cchart.png',
    '%252E%252E%252Foutside%252Fsecret.png',
    'escape.png',
    'deep%2F%2Fdir%2Fchart.png',
    '.%2Fquadrants.png',
  ])('never serves %s', async (identifier) => {
    for (const path of ['info.json', 'full/max/0/default.png']) {
      const response = await get(`/iiif/3/${identifier}/${path}`);
      expect([400, 404], `${identifier}/${path} → ${response.statusCode}`).toContain(response.statusCode);
      expect(response.headers['content-type']).toMatch(/^text\/plain/);
    }
  });

  it('a raw ../ in the URL does not escape either', async () => {
    for (const url of ['/iiif/3/../../outside/secret.png/info.json', '/iiif/3/%2e%2e/outside/secret.png/info.json', '/iiif/3/..%2f..%2foutside%2fsecret.png/full/max/0/default.png']) {
      expect([400, 404]).toContain((await get(url)).statusCode);
    }
  });
});

describe('errors', () => {
  it.each([
    ['/iiif/3/quadrants.png/full/full/0/default.jpg', 400, /"full" is not valid/],
    ['/iiif/3/quadrants.png/0,0,0,10/max/0/default.jpg', 400, /greater than zero/],
    ['/iiif/3/quadrants.png/500,0,10,10/max/0/default.jpg', 400, /outside the image/],
    ['/iiif/3/quadrants.png/full/800,/0/default.jpg', 400, /\^ to allow upscaling/],
    ['/iiif/3/quadrants.png/full/^20000,/0/default.jpg', 400, /exceeds the limit/],
    ['/iiif/3/quadrants.png/full/max/400/default.jpg', 400, /between 0 and 360/],
    ['/iiif/3/quadrants.png/full/max/0/sepia.jpg', 400, /unknown quality/],
    ['/iiif/3/quadrants.png/full/max/0/default.jp2', 400, /unsupported format/],
    ['/iiif/3/quadrants.png/full/max/0/default', 400, /quality}.{format}/],
    ['/iiif/2/quadrants.png/full/^max/0/default.jpg', 400, /not valid in IIIF Image API 2.1/],
    ['/iiif/3/quadrants.png/full/max/0/default.jpg%', 400, /not a valid url/],
    ['/iiif/3/missing.png/full/max/0/default.jpg', 404, /no image with identifier "missing.png"/],
    ['/iiif/3/missing.png/full/max/0/nonsense', 400, /quality}.{format}/],
    ['/iiif/4/quadrants.png/info.json', 404, /no route/],
    ['/iiif/3/', 404, /no identifier/],
    ['/iiif/3/quadrants.png/full/max/0', 404, /not a IIIF path/],
  ])('%s → %i', async (url, status, message) => {
    const response = await get(url);
    expect(response.statusCode).toBe(status);
    expect(response.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(response.body).toMatch(message);
    expect(response.headers['access-control-allow-origin']).toBe('*');
  });

  it('refuses a decompression bomb from its header, without decoding it', async () => {
    const started = process.memoryUsage().rss;
    const info = await get('/iiif/3/bomb.png/info.json');
    expect(info.statusCode).toBe(413);
    expect(info.body).toMatch(/60000×60000 pixels, more than this server decodes/);
    expect((await get('/iiif/3/bomb.png/0,0,10,10/max/0/default.jpg')).statusCode).toBe(413);
    // Decoding 3.6 gigapixels would need gigabytes; refusing costs nothing.
    expect(process.memoryUsage().rss - started).toBeLessThan(200 * 1024 * 1024);
  });

  it('IIIF_MAX_INPUT_PIXELS lowers the decode limit', async () => {
    const strict = await appFor(root, { IIIF_MAX_INPUT_PIXELS: '1000' });
    try {
      expect((await strict.inject({ url: '/iiif/3/quadrants.png/info.json' })).statusCode).toBe(413);
    } finally {
      await strict.close();
    }
  });

  it('answers a corrupt or truncated source with 422 and keeps serving', async () => {
    for (const url of ['/iiif/3/corrupt.jpg/info.json', '/iiif/3/corrupt.jpg/full/max/0/default.jpg', '/iiif/3/truncated.jpg/full/max/0/default.jpg']) {
      const response = await get(url);
      expect(response.statusCode, url).toBe(422);
      expect(response.body).toMatch(/stored image cannot be/);
    }
    expect((await get('/iiif/3/quadrants.png/full/max/0/default.jpg')).statusCode).toBe(200);
  });

  it('the output limits apply to max and are advertised', async () => {
    const small = await appFor(root, { IIIF_MAX_WIDTH: '300', IIIF_MAX_AREA: '30000', IIIF_TILE_SIZE: '128' });
    try {
      const info = (await small.inject({ url: '/iiif/3/quadrants.png/info.json' })).json();
      expect(info).toMatchObject({ maxWidth: 300, maxHeight: 300, maxArea: 30000 });
      for (const size of info.sizes) expect(size.width * size.height).toBeLessThanOrEqual(30000);
      const max = await small.inject({ url: '/iiif/3/quadrants.png/full/max/0/default.png' });
      const meta = await sharp(max.rawPayload).metadata();
      expect(meta.width! * meta.height!).toBeLessThanOrEqual(30000);
      expect(meta.width).toBe(244);
      expect((await small.inject({ url: '/iiif/3/quadrants.png/full/301,/0/default.png' })).statusCode).toBe(400);
    } finally {
      await small.close();
    }
  });

  it('no request line ever produces a 500', async () => {
    const segment = fc.oneof(
      fc.string({ maxLength: 12 }).map(encodeURIComponent),
      fc.constantFrom('full', 'max', '^max', 'square', 'pct:50', '0,0,10,10', '!0', '90', 'default.jpg', 'gray.png', '%', '..', '%2e%2e', '%00', 'quadrants.png', 'info.json', ''),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('2', '3'), fc.array(segment, { minLength: 1, maxLength: 6 }), async (version, segments) => {
        const response = await get(`/iiif/${version}/${segments.join('/')}`);
        return response.statusCode < 500;
      }),
      { numRuns: 400 },
    );
  });
});
