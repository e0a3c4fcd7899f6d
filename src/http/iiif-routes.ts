import type { FastifyInstance } from 'fastify';
import { IiifError } from '../errors.js';
import { parseIiifPath } from '../iiif/path.js';
import type { ApiVersion } from '../iiif/request.js';
import type { IiifService } from '../iiif/service.js';
import type { ClientMisses } from './client-misses.js';
import { publicRoot, type PublicUrlSettings } from './public-url.js';

const VERSIONS: ApiVersion[] = [3, 2];

/** GET and HEAD for /iiif/3/… (Image API 3.0) and /iiif/2/… (2.1), plus CORS preflight. */
export function registerIiifRoutes(app: FastifyInstance, service: IiifService, publicUrls: PublicUrlSettings, misses: ClientMisses): void {
  for (const version of VERSIONS) {
    const prefix = `/iiif/${version}/`;
    app.route({
      method: ['GET', 'HEAD'],
      url: `${prefix}*`,
      handler: async (request, reply) => {
        const target = parseIiifPath(request.url.split('?')[0]!.slice(prefix.length));
        if (target.kind !== 'base') request.routeKind = target.kind;
        misses.check(request.ip);
        const answer = await service
          .answer(target, {
            version,
            head: request.method === 'HEAD',
            headers: request.headers,
            root: () => publicRoot(request, publicUrls),
          })
          .catch((error: unknown) => {
            if (error instanceof IiifError && error.statusCode === 404) misses.record(request.ip);
            throw error;
          });
        return reply.code(answer.status).headers(answer.headers).send(answer.body);
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
