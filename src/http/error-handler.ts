import type { FastifyError, FastifyInstance, FastifyReply } from 'fastify';
import { IiifError } from '../errors.js';
import { errorPage } from './html.js';

/**
 * The one place errors become responses: a status and a short plain-text reason. Our own
 * IiifErrors carry both; fastify's client errors (bad URL encoding, oversized bodies) keep their
 * 4xx; anything else is a bug, logged in full and answered with a bare 500. Routes marked
 * `htmlErrors` (the viewer's pages) get the same status and reason as a small HTML page.
 */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error: FastifyError | IiifError, request, reply) => {
    // The viewer's pages are read by people: the same status, as a page with a way back.
    const send = request.routeOptions.config.htmlErrors
      ? (status: number, message: string) => sendHtmlError(reply, status, message, request.url)
      : (status: number, message: string) => sendError(reply, status, message);
    if (error instanceof IiifError) {
      // Overload (503) is expected under load and counted in metrics; only other 5xx are news.
      if (error.statusCode >= 500 && error.statusCode !== 503) request.log.error({ err: error }, error.message);
      reply.headers(error.headers);
      return send(error.statusCode, error.message);
    }
    const status = error.statusCode ?? 500;
    if (status >= 400 && status < 500) return send(status, error.message);
    request.log.error({ err: error }, 'unhandled error');
    return send(500, 'internal server error');
  });

  app.setNotFoundHandler((request, reply) => sendError(reply, 404, `no route for ${request.method} ${request.url.split('?')[0]}`));
}

export function sendError(reply: FastifyReply, status: number, message: string): FastifyReply {
  return reply
    .code(status)
    .header('access-control-allow-origin', '*')
    .header('cache-control', 'no-store')
    .type('text/plain; charset=utf-8')
    .send(`${message}\n`);
}

function sendHtmlError(reply: FastifyReply, status: number, message: string, path: string): FastifyReply {
  return reply.code(status).header('cache-control', 'no-store').type('text/html; charset=utf-8').send(errorPage(status, message, path));
}
