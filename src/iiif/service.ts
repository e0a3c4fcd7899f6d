import { LRUCache } from 'lru-cache';
import { infoKey, requestKey } from '../cache/keys.js';
import type { ImagePlan, Images, ResolvedImage } from '../image/images.js';
import { entityTag, isNotModified, type ConditionalHeaders } from './conditional.js';
import { CONTEXT, PROFILE } from './info.js';
import { parseImageRequest } from './parse.js';
import type { IiifTarget } from './path.js';
import { MEDIA_TYPES, type ApiVersion, type ImageRequest } from './request.js';

// Bumped whenever rendering changes the bytes for the same request, so ETags change with it.
const RENDERER_REVISION = '3';

/** What the service needs to know of one HTTP request. */
export interface IiifCall {
  version: ApiVersion;
  /** HEAD: the same status and headers, no body (and for images, no pixels decoded). */
  head: boolean;
  headers: ConditionalHeaders & { accept?: string | undefined };
  /**
   * The public root URL ({scheme}://{host}[/prefix]), asked for only when a response names the
   * image (so a request that fails earlier never looks at the Host header).
   */
  root: () => string;
}

/** A complete answer, for any transport: fastify sends it, the CLI prints its body. */
export interface IiifResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer | string | undefined;
}

export interface IiifServiceOptions {
  /** max-age, in seconds, of image and info.json responses. */
  cacheMaxAge: number;
  /** Serialised info.json documents kept. */
  infoDocuments: number;
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
const requestMemo = <V extends object>() =>
  new LRUCache<string, V>({ max: 20_000, maxSize: 8 * 2 ** 20, sizeCalculation: (_value, key) => 2 * key.length + 600 });

/**
 * IIIF behaviour, independent of any transport: the 303 from an image's base URI, info.json
 * with its content negotiation, and images with their ETag, Last-Modified, canonical link and
 * conditional answers. It does no I/O of its own: the image pipeline is handed in.
 */
export class IiifService {
  /** Serialised info.json and its ETag per source version, public id and media type. */
  private readonly infoDocuments: LRUCache<string, { body: string; etag: string }>;
  /**
   * Image requests already parsed and planned. Hot tiles are asked for over and over, and
   * parsing, planning and hashing the ETag again would be a sixth of what such a request costs
   * (measured with W5). Parsing is pure on the path; a plan also depends on the image, so it is
   * keyed by the source version too. Only successes are kept.
   */
  private readonly parsed = requestMemo<ImageRequest>();
  private readonly planned = requestMemo<Planned>();

  constructor(
    private readonly images: Images,
    private readonly options: IiifServiceOptions,
  ) {
    this.infoDocuments = new LRUCache({ max: options.infoDocuments });
  }

  answer(target: IiifTarget, call: IiifCall): Promise<IiifResponse> {
    switch (target.kind) {
      case 'base':
        return this.redirectToInfo(target.identifier, call);
      case 'info':
        return this.info(target.identifier, call);
      case 'image':
        return this.image(target, call);
    }
  }

  /** The info.json document itself, for callers without HTTP (the CLI). */
  async infoDocument(identifier: string, version: ApiVersion, root: string): Promise<Record<string, unknown>> {
    return this.images.info(version, imageId(root, version, identifier), await this.images.resolve(identifier));
  }

  private async redirectToInfo(identifier: string, call: IiifCall): Promise<IiifResponse> {
    await this.images.resolve(identifier);
    const location = `${imageId(call.root(), call.version, identifier)}/info.json`;
    return { status: 303, headers: { 'access-control-allow-origin': '*', location }, body: undefined };
  }

  private async info(identifier: string, call: IiifCall): Promise<IiifResponse> {
    const { version } = call;
    const image = await this.images.resolve(identifier);
    const id = imageId(call.root(), version, identifier);
    const jsonLd = prefersJsonLd(call.headers.accept);
    const contentType = jsonLd ? `application/ld+json;profile="${CONTEXT[version]}"` : 'application/json';
    const key = infoKey(image.source.identifier, image.source.version, version, id, contentType);
    let document = this.infoDocuments.get(key);
    if (!document) {
      const body = JSON.stringify(this.images.info(version, id, image));
      document = { body, etag: entityTag(body, contentType) };
      this.infoDocuments.set(key, document);
    }
    const { body, etag } = document;
    const links = [`<${PROFILE[version]}>;rel="profile"`];
    // The spec recommends pointing plain-JSON clients at the context, and forbids it for JSON-LD.
    if (!jsonLd) links.push(`<${CONTEXT[version]}>;rel="http://www.w3.org/ns/json-ld#context";type="application/ld+json"`);
    const headers = {
      ...this.commonHeaders(etag, image.source.lastModified.toUTCString()),
      vary: 'Accept',
      link: links.join(', '),
    };
    if (isNotModified(call.headers, etag, image.source.lastModified)) return { status: 304, headers, body: undefined };
    const typed = { ...headers, 'content-type': `${contentType}; charset=utf-8` };
    if (call.head) return { status: 200, headers: { ...typed, 'content-length': String(Buffer.byteLength(body)) }, body: undefined };
    return { status: 200, headers: typed, body };
  }

  private async image(target: Extract<IiifTarget, { kind: 'image' }>, call: IiifCall): Promise<IiifResponse> {
    const { version } = call;
    const params = `${version}/${target.region}/${target.size}/${target.rotation}/${target.qualityAndFormat}`;
    // Parse before touching the source: a malformed request is a 400 whether or not the image exists.
    let parsed = this.parsed.get(params);
    if (!parsed) {
      parsed = parseImageRequest(version, target.region, target.size, target.rotation, target.qualityAndFormat);
      this.parsed.set(params, parsed);
    }
    const image = await this.images.resolve(target.identifier);
    const { plan, etag, lastModified } = await this.plan(version, params, parsed, image);
    const canonicalUri = `${imageId(call.root(), version, target.identifier)}/${plan.canonical}`;
    const headers = {
      ...this.commonHeaders(etag, lastModified),
      link: `<${PROFILE[version]}>;rel="profile", <${canonicalUri}>;rel="canonical"`,
    };
    if (isNotModified(call.headers, etag, image.source.lastModified)) return { status: 304, headers, body: undefined };
    const typed = { ...headers, 'content-type': MEDIA_TYPES[plan.format] };
    // HEAD answers from the plan alone: the headers are known without decoding a pixel.
    if (call.head) return { status: 200, headers: typed, body: undefined };
    const rendered = await this.images.render(image, plan);
    return {
      status: 200,
      headers: { ...typed, 'x-iiif-source-level': String(rendered.level), 'x-iiif-render': `${rendered.method}; cache=${rendered.cache}` },
      body: rendered.data,
    };
  }

  private async plan(version: ApiVersion, params: string, parsed: ImageRequest, image: ResolvedImage): Promise<Planned> {
    const key = requestKey(image.source.identifier, image.source.version, params);
    let planned = this.planned.get(key);
    if (!planned) {
      const plan = await this.images.plan(version, parsed, image);
      const etag = entityTag(RENDERER_REVISION, image.source.version, String(version), plan.canonical);
      planned = { plan, etag, lastModified: image.source.lastModified.toUTCString() };
      this.planned.set(key, planned);
    }
    return planned;
  }

  private commonHeaders(etag: string, lastModified: string): Record<string, string> {
    return {
      'access-control-allow-origin': '*',
      'cache-control': `public, max-age=${this.options.cacheMaxAge}`,
      etag,
      'last-modified': lastModified,
    };
  }
}

/** {root}/iiif/{version}/{identifier, encoded}: the image's id, and the base of its URLs. */
export const imageId = (root: string, version: ApiVersion, identifier: string): string =>
  `${root}/iiif/${version}/${encodeURIComponent(identifier)}`;

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
