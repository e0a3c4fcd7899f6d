import type { FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import { badRequest } from '../errors.js';
import { isHostName } from './host-name.js';

export type PublicUrlSettings = Pick<Config, 'baseUrl' | 'trustProxy' | 'publicHosts'>;

/**
 * The server's root URL as the client reached it; it becomes info.json's `id`, the canonical
 * Link and the 303 Location, all cached `public` by any CDN in front. So it is never taken from
 * a header a cache does not key on:
 * - IIIF_BASE_URL, when set, is the answer.
 * - Otherwise the host comes from the request, and with IIIF_PUBLIC_HOSTS only a listed one is
 *   used (X-Forwarded-Host first when the proxy is trusted, then Host); any other request gets
 *   the first listed host.
 * - Without a list, only the Host header is used, never X-Forwarded-Host: a load balancer (an
 *   ALB) neither sets nor strips that header, and a CDN does not key on it, so one request
 *   carrying `X-Forwarded-Host: attacker.example` would poison the cached documents for all.
 *   Host is part of every cache key and is what the client really asked for.
 * The scheme honours X-Forwarded-Proto from a trusted proxy (it can only say http or https).
 */
export function publicRoot(request: FastifyRequest, settings: PublicUrlSettings): string {
  if (settings.baseUrl) return settings.baseUrl;
  const scheme = request.protocol === 'https' ? 'https' : 'http';
  return `${scheme}://${publicHost(request, settings)}`;
}

function publicHost(request: FastifyRequest, { trustProxy, publicHosts }: PublicUrlSettings): string {
  const host = request.headers.host ?? '';
  if (!publicHosts) {
    if (!isHostName(host)) throw badRequest('the Host header is not a valid host name');
    return host;
  }
  const forwarded = trustProxy ? firstValue(request.headers['x-forwarded-host']) : undefined;
  const listed = [forwarded, host].find((candidate) => candidate !== undefined && publicHosts.includes(candidate.toLowerCase()));
  return listed?.toLowerCase() ?? publicHosts[0]!;
}

/** The first of a header's comma-separated values (the one the outermost proxy saw). */
function firstValue(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  return value?.split(',')[0]!.trim();
}
