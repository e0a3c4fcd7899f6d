import { readdir, readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, extname, join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { notFound } from '../errors.js';
import { projectRoot } from '../paths.js';
import { entityTag, isNotModified } from '../iiif/conditional.js';

interface Asset {
  body: Buffer;
  type: string;
  etag: string;
  loadedAt: Date;
}

const TYPES: Record<string, string> = {
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.png': 'image/png',
};

// Assets change only with a new release (new container); an hour keeps upgrades visible soon.
const ASSET_MAX_AGE = 3600;

/**
 * The viewer's static files, read into memory once at start-up: OpenSeadragon and its button
 * images from the npm package (served by us, so the viewer works offline and without a CDN) and
 * our own stylesheet and start-up script from public/. Requests are answered by looking the
 * name up in this fixed table, so no request path ever reaches the file system.
 */
export async function loadViewerAssets(): Promise<Map<string, Asset>> {
  const osd = dirname(createRequire(import.meta.url).resolve('openseadragon'));
  const files: Array<[name: string, path: string]> = [
    ['openseadragon.min.js', join(osd, 'openseadragon.min.js')],
    ['viewer.css', join(projectRoot(), 'public', 'viewer.css')],
    ['viewer.js', join(projectRoot(), 'public', 'viewer.js')],
  ];
  for (const image of await readdir(join(osd, 'images'))) {
    if (extname(image) === '.png') files.push([`openseadragon/images/${image}`, join(osd, 'images', image)]);
  }
  const assets = new Map<string, Asset>();
  const loadedAt = new Date();
  for (const [name, path] of files) {
    const body = await readFile(path);
    assets.set(name, { body, type: TYPES[extname(name)]!, etag: entityTag(body), loadedAt });
  }
  return assets;
}

/** GET/HEAD /viewer-assets/{name}, with ETag revalidation. */
export function registerViewerAssets(app: FastifyInstance, assets: Map<string, Asset>): void {
  app.route({
    method: ['GET', 'HEAD'],
    url: '/viewer-assets/*',
    handler: (request, reply) => {
      const name = (request.params as { '*': string })['*'];
      const asset = assets.get(name);
      if (!asset) throw notFound(`no viewer asset "${name.slice(0, 100)}"`);
      reply
        .header('cache-control', `public, max-age=${ASSET_MAX_AGE}`)
        .header('etag', asset.etag)
        .header('last-modified', asset.loadedAt.toUTCString());
      if (isNotModified(request.headers, asset.etag, asset.loadedAt)) return reply.code(304).send();
      return reply.type(asset.type).send(asset.body);
    },
  });
}
