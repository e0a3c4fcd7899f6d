// The part of autocannon's API (v8, untyped JavaScript) that scripts/bench-cluster.ts uses.
declare module 'autocannon' {
  interface Histogram {
    average: number;
    p50: number;
    p99: number;
  }
  interface Result {
    requests: Histogram;
    latency: Histogram;
    throughput: Histogram;
    non2xx: number;
    errors: number;
    timeouts: number;
  }
  interface Options {
    url: string;
    connections?: number;
    duration?: number;
    requests?: Array<{ path: string; method?: string }>;
  }
  export default function autocannon(options: Options): Promise<Result>;
}
