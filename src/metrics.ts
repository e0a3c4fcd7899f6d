import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

/** What kind of request a response answered: bounded, so it is safe as a metric label. */
export type RouteKind = 'info' | 'image' | 'other';

// Tiles take milliseconds, large renders seconds: buckets cover both without identifiers as labels.
const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * One registry per process, made at start-up and passed to whoever records. Modules add their
 * own instruments here (the S3 source its fetch counters, the caches their sizes) so /metrics
 * shows one coherent picture. Label values are always from small fixed sets.
 */
export class Metrics {
  readonly registry = new Registry();

  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time from request to response, by route kind, method and status class.',
    labelNames: ['route', 'method', 'status_class'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  readonly inFlight = new Gauge({
    name: 'iiif_requests_in_flight',
    help: 'Requests being handled right now.',
    registers: [this.registry],
  });

  readonly renderSeconds = new Histogram({
    name: 'iiif_render_seconds',
    help: 'Time per render in a lane (sharp, OpenJPEG, libjpeg-turbo, or a cut of several stored tiles), by output format.',
    labelNames: ['format'] as const,
    buckets: LATENCY_BUCKETS,
    registers: [this.registry],
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry });
  }

  counter<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Counter<L> {
    return new Counter({ name, help, labelNames, registers: [this.registry] });
  }

  gauge<L extends string>(name: string, help: string, labelNames: readonly L[] = []): Gauge<L> {
    return new Gauge({ name, help, labelNames, registers: [this.registry] });
  }

  histogram<L extends string>(name: string, help: string, labelNames: readonly L[] = [], buckets = LATENCY_BUCKETS): Histogram<L> {
    return new Histogram({ name, help, labelNames, buckets, registers: [this.registry] });
  }
}
