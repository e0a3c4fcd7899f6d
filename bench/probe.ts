/**
 * The tiny request a benchmark samples while it loads a server: our `/health` (what the load
 * balancer's check asks, answered from memory; a blocked event loop shows here first), or for
 * iipsrv, which has none, its FastCGI endpoint without arguments (`IIPSRV_PROBE`).
 */
import { Agent, get } from 'node:http';

/** Pause between two samples (each waits for the previous answer). */
export const PROBE_GAP_MS = 25;

export interface Latency {
  samples: number;
  p99Ms: number;
  maxMs: number;
  /** Answers by status; 0: no answer. */
  statuses: Record<string, number>;
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * One GET, its body read, timed; `servedBy` is the replica HAProxy names (scripts/cluster/haproxy.ts).
 * node:http rather than fetch: fetch loads and compiles undici on first use and leaves much
 * garbage per request, which cost the first server a benchmark process measured 20–30 ms on its
 * cold info.json and kept the process in full collections while it sampled (`--trace-gc`: one
 * to two Mark-Compacts a second), CPU taken from the servers being measured. Rejects when no
 * answer comes.
 */
export function timedGet(url: string, agent?: Agent): Promise<{ status: number; ms: number; servedBy?: string }> {
  const begun = performance.now();
  return new Promise((resolve, reject) => {
    get(url, agent ? { agent } : {}, (response) => {
      response.once('error', reject);
      response.once('end', () => {
        const servedBy = response.headers['x-served-by'];
        resolve({ status: response.statusCode ?? 0, ms: performance.now() - begun, ...(typeof servedBy === 'string' ? { servedBy } : {}) });
      });
      response.resume();
    }).once('error', reject);
  });
}

/** Requests `url` one at a time over one kept-alive connection, PROBE_GAP_MS apart, until stopped; latencies and statuses. */
export function sampleLatency(url: string): { stop(): Promise<Latency> } {
  const times: number[] = [];
  const statuses: Record<string, number> = {};
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  let running = true;
  const loop = (async () => {
    while (running) {
      const { status, ms } = await timedGet(url, agent).catch(() => ({ status: 0, ms: NaN }));
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (!Number.isNaN(ms)) times.push(ms);
      await sleep(PROBE_GAP_MS);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      agent.destroy();
      const sorted = times.sort((a, b) => a - b);
      const p99 = sorted[Math.max(0, Math.ceil(sorted.length * 0.99) - 1)] ?? NaN;
      return { samples: sorted.length, p99Ms: round1(p99), maxMs: round1(sorted.at(-1) ?? NaN), statuses };
    },
  };
}
