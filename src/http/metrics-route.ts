import Fastify, { type FastifyInstance } from 'fastify';
import type { Metrics } from '../metrics.js';
import { registerErrorHandling } from './error-handler.js';
import type { ServerTimeouts } from './timeouts.js';

/** GET /metrics: the registry in Prometheus text format, never cached. */
export function registerMetricsRoute(app: FastifyInstance, metrics: Metrics): void {
  app.get('/metrics', async (_request, reply) =>
    reply.type(metrics.registry.contentType).header('cache-control', 'no-store').send(await metrics.registry.metrics()),
  );
}

/**
 * The small second listener used when IIIF_METRICS_PORT is set: /metrics, and the operator
 * routes when a token is set (src/server.ts adds them), so a deployment keeps both on a private port
 * (security group, no load-balancer target) while the main port is public. Everything else
 * there is a plain 404. It keeps the main port's socket deadlines: being private does not make
 * a stalled scraper or a silent connection harmless, and each would hold a socket for ever.
 */
export function buildMetricsApp(metrics: Metrics, timeouts: ServerTimeouts): FastifyInstance {
  const app = Fastify({ logger: false, ...timeouts });
  registerErrorHandling(app);
  registerMetricsRoute(app, metrics);
  return app;
}
