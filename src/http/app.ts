import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { Config } from '../config.js';
import { Images } from '../image/images.js';
import type { Pyramids } from '../image/pyramid/store.js';
import { Metrics, type RouteKind } from '../metrics.js';
import type { ImageSource } from '../source/source.js';
import { registerAdminRoutes } from './admin-routes.js';
import { registerErrorHandling, sendError } from './error-handler.js';
import { registerIiifRoutes } from './iiif-routes.js';
import { registerMetricsRoute } from './metrics-route.js';
import { registerViewer } from './viewer.js';
import { Lifecycle, registerDraining } from './lifecycle.js';
import { registerResponseGuard, ResponseBudget } from './response-guard.js';
import { serverTimeouts } from './timeouts.js';

// A caller's X-Request-Id is reused in logs only when it is short and tame.
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export interface AppOptions {
  config: Config;
  source: ImageSource;
  /** Where pyramids made on first touch are kept; without it images are read as they are. */
  pyramids?: Pyramids;
  /** The process's metrics registry; a fresh one when omitted (tests). */
  metrics?: Metrics;
  /** Defaults to JSON lines at config.logLevel; tests pass false. */
  logger?: boolean;
  /** Whether the process is draining; `/health` fails while it is. A fresh one when omitted. */
  lifecycle?: Lifecycle;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by the IIIF routes once the path is understood; labels the latency histogram. */
    routeKind: RouteKind;
  }
}

export function buildApp({
  config,
  source,
  pyramids,
  metrics = new Metrics(),
  logger = true,
  lifecycle = new Lifecycle(),
}: AppOptions): FastifyInstance {
  const app = Fastify({
    logger: logger ? { level: config.logLevel } : false,
    logController: new LogController({ disableRequestLogging: !config.accessLog }),
    trustProxy: config.trustProxy,
    // Every route has explicit GET and HEAD handlers; HEAD must not render pixels.
    exposeHeadRoutes: false,
    ...serverTimeouts(config),
    // Errors raised before routing (e.g. a malformed %-escape) get the same plain-text 400.
    frameworkErrors: (error, _request, reply) => sendError(reply, 400, error.message),
    requestIdHeader: false,
    genReqId: (request) => {
      const given = request.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
  });
  app.decorateRequest('routeKind', 'other');
  // Callback-style hooks: they run on every request, and an async hook costs a promise each.
  app.addHook('onRequest', (request, reply, done) => {
    reply.header('x-request-id', request.id);
    metrics.inFlight.inc();
    done();
  });
  app.addHook('onResponse', (request, reply, done) => {
    metrics.inFlight.dec();
    metrics.httpDuration.observe(
      { route: request.routeKind, method: request.method, status_class: `${Math.floor(reply.statusCode / 100)}xx` },
      reply.elapsedTime / 1000,
    );
    done();
  });

  registerErrorHandling(app);
  registerDraining(app, lifecycle);
  registerResponseGuard(app, {
    budget: new ResponseBudget(config.responseMemoryBytes),
    writeTimeoutMs: config.writeTimeoutMs,
    retryAfterSeconds: config.largeRenderRetryAfterSeconds,
    metrics,
  });
  app.get('/health', async (_request, reply) => {
    reply.header('cache-control', 'no-store');
    return lifecycle.draining ? reply.code(503).send({ status: 'draining' }) : reply.send({ status: 'ok' });
  });
  // With IIIF_METRICS_PORT the scrape endpoint lives on its own listener (src/server.ts) only.
  if (config.metrics && config.metricsPort === undefined) registerMetricsRoute(app, metrics);
  const images = new Images(source, config, metrics, pyramids);
  app.addHook('onClose', async () => images.close());
  registerIiifRoutes(app, images, config);
  if (config.adminToken) registerAdminRoutes(app, images, config.adminToken);
  registerViewer(app, source, images, config);
  return app;
}
