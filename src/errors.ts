/**
 * Every error this server raises on purpose carries a stable code (as fastify's coded errors
 * do), so logs, tests and operators can tell failures apart without parsing messages. Errors
 * that end up in a response are IiifErrors, which add the HTTP status.
 */
export class ServerError extends Error {
  constructor(
    readonly code: string,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The configuration cannot work: every problem found, in one line for the orchestrator's log. */
export class ConfigError extends ServerError {
  constructor(readonly problems: string[]) {
    super('CONFIG_INVALID', `invalid configuration: ${problems.join('; ')}`);
  }
}

/**
 * Errors that become responses. Each carries the HTTP status and a short message a user can
 * act on; the one error handler in src/http maps them to plain-text responses. Modules throw
 * these instead of building responses, so the protocol layer stays free of HTTP concerns.
 */
export class IiifError extends ServerError {
  constructor(
    readonly statusCode: number,
    code: string,
    message: string,
    /** Extra response headers the error implies (Retry-After on a 503, WWW-Authenticate on a 401). */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super(code, message);
  }
}

/** A request we understand but whose parameters are malformed or out of range. */
export const badRequest = (message: string): IiifError => new IiifError(400, 'IIIF_BAD_REQUEST', message);

/** No image with that identifier, or a path we will not serve. */
export const notFound = (message: string): IiifError => new IiifError(404, 'IIIF_NOT_FOUND', message);

/** A source image we refuse to decode (too many pixels: a decompression bomb or just too big). */
export const sourceTooLarge = (message: string): IiifError => new IiifError(413, 'IIIF_SOURCE_TOO_LARGE', message);

/**
 * A source file that exists but cannot be decoded as an image (unknown format, truncated or
 * corrupt bytes). 422: the request is fine, the stored image is not, and retrying will not help.
 */
export const undecodableSource = (message: string): IiifError =>
  new IiifError(422, 'IIIF_UNDECODABLE_SOURCE', message);

/** The request needs more memory than one render may use: it will never fit, so do not retry. */
export const renderTooLarge = (message: string): IiifError => new IiifError(413, 'IIIF_RENDER_TOO_LARGE', message);

/** Saturated: the client should come back after `retryAfterSeconds`. */
export const overloaded = (message: string, retryAfterSeconds: number): IiifError =>
  new IiifError(503, 'IIIF_OVERLOADED', message, { 'retry-after': String(retryAfterSeconds) });

/**
 * The image store is unreachable, too slow or throttling us, after bounded retries. Temporary by
 * nature, so clients (and the load balancer) are told when to try again.
 */
export const sourceUnavailable = (message: string, retryAfterSeconds: number): IiifError =>
  new IiifError(503, 'IIIF_SOURCE_UNAVAILABLE', message, { 'retry-after': String(retryAfterSeconds) });

/** The image store answered, but not usefully: an incomplete body or an error we cannot act on. */
export const badGateway = (message: string): IiifError => new IiifError(502, 'IIIF_BAD_GATEWAY', message);

/** No credentials where some are required. */
export const unauthorized = (message: string): IiifError =>
  new IiifError(401, 'IIIF_UNAUTHORIZED', message, { 'www-authenticate': 'Bearer' });

/** Credentials given but wrong. */
export const forbidden = (message: string): IiifError => new IiifError(403, 'IIIF_FORBIDDEN', message);

/**
 * The first line of an underlying error's message, for a response body: short, and without
 * the local paths libraries put in their messages (a client must never learn the server's
 * folders).
 */
export function reasonOf(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message
    .split('\n')[0]!
    // Quoted paths first, whole; then bare POSIX and Windows paths and file: URLs, running on
    // through spaces while the next word is still part of a path ("/srv/a b/c.tif").
    .replace(/"[^"]*[/\\][^"]*"|'[^']*[/\\][^']*'/g, '"…"')
    .replace(/(?:file:\/\/)?(?:[A-Za-z]:)?[/\\][^\s:'"]*(?: [^\s:'"]*[/\\][^\s:'"]*)*/g, '…')
    .slice(0, 200);
}

/**
 * A source in a format this server reads only with an optional part the operator has not
 * installed (JPEG 2000 without the native OpenJPEG decoder). 501: nothing the client can change.
 */
export const formatUnavailable = (message: string): IiifError => new IiifError(501, 'IIIF_FORMAT_UNAVAILABLE', message);
