import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyInstance } from 'fastify';
import type { RouteKind } from '../metrics.js';
import type { Runtime } from '../runtime.js';
import { registerAdminRoutes } from './admin-routes.js';
import { ClientMisses } from './client-misses.js';
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

/** The HTTP side of a runtime: routes, hooks and error handling. Closing the app closes the runtime. */
export function buildApp(runtime: Runtime, { logger = true, lifecycle = new Lifecycle() }: AppOptions = {}): FastifyInstance {
  const { config, metrics } = runtime;
  const app = Fastify({
    logger: logger ? { level: config.logLevel } : false,
    logController: new LogController({ disableRequestLogging: !config.accessLog }),
    // One hop: the load balancer's own entries (the last X-Forwarded-For address, the last
    // X-Forwarded-Proto) count; anything earlier in those headers was written by the client.
    trustProxy: config.trustProxy ? (_address: string, hop: number) => hop === 0 : false,
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
  app.addHook('onClose', async () => runtime.close());
  registerIiifRoutes(app, runtime.service, config, new ClientMisses(config.clientMisses));
  // With IIIF_METRICS_PORT the operator routes live on that private listener (src/server.ts) only.
  if (config.adminToken && config.metricsPort === undefined) registerAdminRoutes(app, runtime.images, config.adminToken);
  registerViewer(app, runtime.source, runtime.images, config);
  return app;
}
