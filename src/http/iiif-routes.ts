import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { LRUCache } from 'lru-cache';
import { infoKey, requestKey } from '../cache/keys.js';
import type { Config } from '../config.js';
import { CONTEXT, PROFILE } from '../iiif/info.js';
import { parseImageRequest } from '../iiif/parse.js';
import { MEDIA_TYPES, type ApiVersion, type ImageRequest } from '../iiif/request.js';
import type { ImagePlan, Images } from '../image/images.js';
import { entityTag, isNotModified } from './conditional.js';
import { parseIiifPath, type IiifTarget } from './iiif-path.js';
import { publicRoot } from './public-url.js';

// Bumped whenever rendering changes the bytes for the same request, so ETags change with it.
const RENDERER_REVISION = '1';

const VERSIONS: ApiVersion[] = [3, 2];

/** GET and HEAD for /iiif/3/… (Image API 3.0) and /iiif/2/… (2.1), plus CORS preflight. */
export function registerIiifRoutes(app: FastifyInstance, images: Images, config: Config): void {
  // Serialised info.json and its ETag per source version, public id and media type: a viewer
  // opening an image asks for it first, and identical documents need not be rebuilt and hashed.
  const infoDocuments: InfoDocuments = new LRUCache({ max: config.metadataCacheEntries });
  const memo: RequestMemo = { parsed: memoCache(), planned: memoCache() };
  for (const version of VERSIONS) {
    const prefix = `/iiif/${version}/`;
    app.route({
      method: ['GET', 'HEAD'],
      url: `${prefix}*`,
      handler: (request, reply) => {
        const rawPath = request.url.split('?')[0]!;
        const target = parseIiifPath(rawPath.slice(prefix.length));
        if (target.kind !== 'base') request.routeKind = target.kind;
        const context: RouteContext = { version, request, reply, images, config, infoDocuments, memo };
        switch (target.kind) {
          case 'base':
            return redirectToInfo(context, target);
          case 'info':
            return sendInfo(context, target);
          case 'image':
            return sendImage(context, target);
        }
      },
    });
    app.options(`${prefix}*`, (_request, reply) =>
      reply
        .code(204)
        .header('access-control-allow-origin', '*')
        .header('access-control-allow-methods', 'GET, HEAD, OPTIONS')
        .header('access-control-allow-headers', 'Accept, If-None-Match, If-Modified-Since')
        .header('access-control-max-age', '86400')
        .send(),
    );
  }
}

type InfoDocuments = LRUCache<string, { body: string; etag: string }>;

/**
 * Image requests already parsed and planned. Hot tiles are asked for over and over, and
 * parsing, planning and hashing the ETag again would be a sixth of what such a request costs
 * (measured with W5). Parsing is pure on the path; a plan also depends on the image, so it is
 * keyed by the source version too. Only successes are kept.
 */
interface RequestMemo {
  parsed: LRUCache<string, ImageRequest>;
  planned: LRUCache<string, Planned>;
}

interface Planned {
  plan: ImagePlan;
  etag: string;
  lastModified: string;
}

/**
 * Far more distinct requests than one container serves hot, in at most 8 MiB per memo whatever
 * the length of hostile paths: an entry is counted as its key's UTF-16 bytes plus about what
 * a plan occupies.
 */
const memoCache = <V extends object>() =>
  new LRUCache<string, V>({ max: 20_000, maxSize: 8 * 2 ** 20, sizeCalculation: (_value, key) => 2 * key.length + 600 });

interface RouteContext {
  infoDocuments: InfoDocuments;
  memo: RequestMemo;
  version: ApiVersion;
  request: FastifyRequest;
  reply: FastifyReply;
  images: Images;
  config: Config;
}

/** {scheme}://{host}/iiif/{version}/{identifier, encoded} */
function imageBaseUri({ version, request, config }: RouteContext, identifier: string): string {
  return `${publicRoot(request, config)}/iiif/${version}/${encodeURIComponent(identifier)}`;
}

async function redirectToInfo(context: RouteContext, target: Extract<IiifTarget, { kind: 'base' }>) {
  await context.images.resolve(target.identifier);
  return context.reply
    .code(303)
    .header('access-control-allow-origin', '*')
    .header('location', `${imageBaseUri(context, target.identifier)}/info.json`)
    .send();
}

async function sendInfo(context: RouteContext, target: Extract<IiifTarget, { kind: 'info' }>) {
  const { version, request, reply, images, config, infoDocuments } = context;
  const image = await images.resolve(target.identifier);
  const id = imageBaseUri(context, target.identifier);
  const jsonLd = prefersJsonLd(request.headers.accept);
  const contentType = jsonLd
    ? `application/ld+json;profile="${CONTEXT[version]}"`
    : 'application/json';
  const key = infoKey(image.source.identifier, image.source.version, version, id, contentType);
  let document = infoDocuments.get(key);
  if (!document) {
    const body = JSON.stringify(images.info(version, id, image));
    document = { body, etag: entityTag(body, contentType) };
    infoDocuments.set(key, document);
  }
  const { body, etag } = document;
  const links = [`<${PROFILE[version]}>;rel="profile"`];
  // The spec recommends pointing plain-JSON clients at the context, and forbids it for JSON-LD.
  if (!jsonLd) links.push(`<${CONTEXT[version]}>;rel="http://www.w3.org/ns/json-ld#context";type="application/ld+json"`);
  setCommonHeaders(reply, config, etag, image.source.lastModified.toUTCString())
    .header('vary', 'Accept')
    .header('link', links.join(', '));
  if (isNotModified(request, etag, image.source.lastModified)) return reply.code(304).send();
  reply.type(`${contentType}; charset=utf-8`);
  return request.method === 'HEAD' ? reply.header('content-length', Buffer.byteLength(body)).send() : reply.send(body);
}

async function sendImage(context: RouteContext, target: Extract<IiifTarget, { kind: 'image' }>) {
  const { version, request, reply, images, config, memo } = context;
  const params = `${version}/${target.region}/${target.size}/${target.rotation}/${target.qualityAndFormat}`;
  // Parse before touching the source: a malformed request is a 400 whether or not the image exists.
  let parsed = memo.parsed.get(params);
  if (!parsed) {
    parsed = parseImageRequest(version, target.region, target.size, target.rotation, target.qualityAndFormat);
    memo.parsed.set(params, parsed);
  }
  const image = await images.resolve(target.identifier);
  const planKey = requestKey(image.source.identifier, image.source.version, params);
  let planned = memo.planned.get(planKey);
  if (!planned) {
    const plan = images.plan(version, parsed, image);
    const etag = entityTag(RENDERER_REVISION, image.source.version, String(version), plan.canonical);
    planned = { plan, etag, lastModified: image.source.lastModified.toUTCString() };
    memo.planned.set(planKey, planned);
  }
  const { plan, etag } = planned;
  const canonicalUri = `${imageBaseUri(context, target.identifier)}/${plan.canonical}`;
  setCommonHeaders(reply, config, etag, planned.lastModified).header(
    'link',
    `<${PROFILE[version]}>;rel="profile", <${canonicalUri}>;rel="canonical"`,
  );
  if (isNotModified(request, etag, image.source.lastModified)) return reply.code(304).send();
  reply.type(MEDIA_TYPES[plan.format]);
  // HEAD answers from the plan alone: the headers are known without decoding a pixel.
  if (request.method === 'HEAD') return reply.send();
  const rendered = await images.render(image, plan);
  return reply
    .header('x-iiif-source-level', String(rendered.level))
    .header('x-iiif-render', `${rendered.method}; cache=${rendered.cache}`)
    .send(rendered.data);
}

function setCommonHeaders(reply: FastifyReply, config: Config, etag: string, lastModified: string): FastifyReply {
  return reply
    .header('access-control-allow-origin', '*')
    .header('cache-control', `public, max-age=${config.cacheMaxAge}`)
    .header('etag', etag)
    .header('last-modified', lastModified);
}

/** True when the Accept header ranks application/ld+json at least as high as plain JSON. */
export function prefersJsonLd(accept: string | undefined): boolean {
  if (!accept) return false;
  let jsonLd = 0;
  let json = 0;
  for (const range of accept.split(',')) {
    const [type = '', ...params] = range.split(';').map((part) => part.trim().toLowerCase());
    const qParam = params.find((p) => p.startsWith('q='));
    const q = qParam ? Number(qParam.slice(2)) || 0 : 1;
    if (type === 'application/ld+json') jsonLd = Math.max(jsonLd, q);
    if (type === 'application/json') json = Math.max(json, q);
  }
  return jsonLd > 0 && jsonLd >= json;
}
