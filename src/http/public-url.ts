import type { FastifyRequest } from 'fastify';
import { badRequest } from '../errors.js';

// host, IPv4 or [IPv6], with an optional port: nothing that could break a header or a URL.
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$/;

/**
 * The server's root URL as the client reached it. A configured IIIF_BASE_URL wins; otherwise
 * scheme and host come from the request (fastify honours X-Forwarded-Proto/-Host only when
 * IIIF_TRUST_PROXY made it trust the proxy). Hosts are validated because they end up in
 * headers (Location, Link) and in info.json.
 */
export function publicRoot(request: FastifyRequest, baseUrl: string | undefined): string {
  if (baseUrl) return baseUrl;
  const host = request.host;
  if (!HOST.test(host)) throw badRequest('the Host header is not a valid host name');
  const scheme = request.protocol === 'https' ? 'https' : 'http';
  return `${scheme}://${host}`;
}
