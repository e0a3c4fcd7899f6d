import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { badRequest, forbidden, notFound, unauthorized } from '../errors.js';
import type { Images } from '../image/images.js';
import { checkIdentifier } from '../source/identifier.js';

const PURGE_PREFIX = '/admin/cache/';

/**
 * Operator routes, registered only when a token is configured (otherwise they do not exist and
 * answer 404 like any unknown path). `DELETE /admin/cache/{identifier}` drops an image's cached
 * source file, its remembered 404 and its probed metadata, so the next request reads it afresh.
 * The identifier is percent-encoded into one path segment, as in IIIF URLs.
 */
export function registerAdminRoutes(app: FastifyInstance, images: Images, token: string): void {
  const expected = digest(token);
  app.delete(`${PURGE_PREFIX}*`, async (request, reply) => {
    authorize(request, expected);
    const encoded = request.url.split('?')[0]!.slice(PURGE_PREFIX.length);
    if (encoded.includes('/')) throw notFound('the identifier must be percent-encoded into one path segment');
    const identifier = checkIdentifier(decode(encoded));
    await images.purge(identifier);
    request.log.info({ identifier }, 'purged from caches');
    return reply.code(204).header('cache-control', 'no-store').send();
  });
}

function authorize(request: FastifyRequest, expected: Buffer): void {
  const header = request.headers.authorization;
  const match = header?.match(/^Bearer\s+(\S+)\s*$/i);
  if (!match) throw unauthorized('this route needs "Authorization: Bearer <token>"');
  // Comparing fixed-length digests in constant time reveals neither the token nor its length.
  if (!timingSafeEqual(digest(match[1]!), expected)) throw forbidden('wrong token');
}

function decode(encoded: string): string {
  try {
    return decodeURIComponent(encoded);
  } catch {
    throw badRequest('malformed percent-encoding in the identifier');
  }
}

const digest = (text: string): Buffer => createHash('sha256').update(text).digest();
