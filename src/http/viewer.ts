import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Config } from '../config.js';
import { notFound } from '../errors.js';
import type { Images } from '../image/images.js';
import type { ImageSource } from '../source/source.js';
import { escapeHtml, page } from './html.js';
import { decodeSegment } from '../iiif/path.js';
import { loadViewerAssets, registerViewerAssets } from './viewer-assets.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route answers people with a browser: its errors are HTML pages (see errors.ts). */
    htmlErrors?: boolean;
  }
}

/** Thumbnails on the index: small, cheap, from the smallest pyramid level that suffices. */
const THUMBNAIL = '!240,240';

/**
 * The built-in viewer: `/` lists the images, `/viewer/{identifier}` shows one in OpenSeadragon
 * on its IIIF 3 tile source. All links are relative, so the pages work behind any host and
 * path prefix without IIIF_BASE_URL.
 */
export function registerViewer(app: FastifyInstance, source: ImageSource, images: Images, config: Config): void {
  app.register(async (scope) => registerViewerAssets(scope, await loadViewerAssets()));

  app.route({
    method: ['GET', 'HEAD'],
    url: '/',
    config: { htmlErrors: true },
    handler: async (_request, reply) => {
      // One more than shown tells us whether the list was cut.
      const identifiers = source.list ? await source.list(config.listLimit + 1) : undefined;
      return sendPage(reply, indexPage(identifiers, config.listLimit));
    },
  });

  app.route({
    method: ['GET', 'HEAD'],
    url: '/viewer/*',
    config: { htmlErrors: true },
    handler: async (request, reply) => {
      const rest = request.url.split('?')[0]!.slice('/viewer/'.length);
      // As in the IIIF routes, a "/" inside an identifier must arrive encoded as %2F.
      if (rest === '' || rest.includes('/')) throw notFound('the viewer URL is /viewer/{identifier}, with "/" encoded as %2F');
      const identifier = decodeSegment(rest);
      const image = await images.resolve(identifier);
      return sendPage(reply, viewerPage(identifier, image.metadata.width, image.metadata.height));
    },
  });
}

function sendPage(reply: FastifyReply, html: string): FastifyReply {
  // The listing and the files behind it change; a short shared max-age would show stale lists.
  return reply.header('cache-control', 'no-cache').type('text/html; charset=utf-8').send(html);
}

function indexPage(identifiers: string[] | undefined, limit: number): string {
  let content: string;
  if (!identifiers) {
    content = '<p>This image source cannot list its images. Open one directly at <code>/viewer/{identifier}</code>.</p>';
  } else if (identifiers.length === 0) {
    content = '<p>No images yet: put image files in the image folder and reload.</p>';
  } else {
    const shown = identifiers.slice(0, limit);
    const count = identifiers.length > limit ? `The first ${limit} images` : `${shown.length} image${shown.length === 1 ? '' : 's'}`;
    const items = shown.map((identifier) => {
      const encoded = encodeURIComponent(identifier);
      return `<li><a href="viewer/${escapeHtml(encoded)}"><img src="iiif/3/${escapeHtml(encoded)}/full/${THUMBNAIL}/0/default.jpg" alt="" loading="lazy" decoding="async"><span>${escapeHtml(identifier)}</span></a></li>`;
    });
    content = `<p>${count}, in name order. Open one to zoom in.</p>\n<ul class="images">\n${items.join('\n')}\n</ul>`;
  }
  return page({
    title: 'Images',
    toRoot: '',
    body: `<header><h1>Images</h1></header>\n<main id="main">\n${content}\n</main>`,
  });
}

function viewerPage(identifier: string, width: number, height: number): string {
  const name = escapeHtml(identifier);
  const info = `../iiif/3/${escapeHtml(encodeURIComponent(identifier))}/info.json`;
  return page({
    title: identifier,
    toRoot: '../',
    bodyClass: 'viewer-page',
    body: `<header>
<nav aria-label="Breadcrumb"><a href="../">All images</a></nav>
<h1>${name}</h1>
<p>${width} × ${height} pixels · <a href="${info}">IIIF info.json</a></p>
</header>
<main id="main">
<div id="viewer" class="viewer" role="region" aria-label="Zoomable image: ${name}" data-info="${info}" data-buttons="../viewer-assets/openseadragon/images/"></div>
<p class="hint">Drag to pan, scroll or pinch to zoom. With the keyboard: Tab to the image, then <kbd>+</kbd> / <kbd>-</kbd> to zoom, arrow keys to pan, <kbd>0</kbd> to reset.</p>
<noscript><p>The zoomable view needs JavaScript. The image itself: <a href="../iiif/3/${escapeHtml(encodeURIComponent(identifier))}/full/max/0/default.jpg">full size JPEG</a>.</p></noscript>
</main>`,
    scripts: '<script src="../viewer-assets/openseadragon.min.js"></script>\n<script src="../viewer-assets/viewer.js"></script>',
  });
}

