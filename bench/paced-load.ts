/**
 * Open-loop load at an even rate, for the capacity measurement. autocannon's `overallRate`
 * lets every connection send its quota for the second back to back as each second begins, so
 * the server receives a burst of the whole second's requests at once and p99 measures how long
 * it takes to drain that burst, not whether it keeps up. Here request i is sent at
 * start + i / rate whatever became of the ones before it (a slow server does not slow the
 * offered load), and its latency is counted from that scheduled moment, so a lagging load
 * generator or a queue at the server shows up in p99 instead of being hidden.
 */
import { Agent, request } from 'node:http';

/** Latency of a set of requests: how many, p99 and slowest, in ms. */
export interface Latency {
  requests: number;
  p99Ms: number;
  maxMs: number;
}

export interface PacedResult extends Latency {
  /** From the first request sent to the last one answered. */
  seconds: number;
  /** From the first request sent to the last: below `seconds × rate` requests only if the generator fell behind its schedule. */
  sendSeconds: number;
  errors: number;
  non2xx: number;
  /** The same per group, when `groupOf` names one for each path. */
  groups: Record<string, Latency>;
}

function latency(values: number[] | Float64Array): Latency {
  const sorted = Float64Array.from(values).sort();
  const count = sorted.length;
  return { requests: count, p99Ms: count ? Math.round(sorted[Math.ceil(count * 0.99) - 1]!) : 0, maxMs: count ? Math.round(sorted[count - 1]!) : 0 };
}

export async function pacedLoad(
  url: string,
  rate: number,
  seconds: number,
  nextPath: () => string,
  timeoutMs: number,
  groupOf: (path: string) => string = () => 'all',
): Promise<PacedResult> {
  const { hostname, port } = new URL(url);
  const agent = new Agent({ keepAlive: true, maxSockets: 1024 });
  const total = Math.max(1, Math.round(rate * seconds));
  const latencies = new Float64Array(total);
  const groups = new Map<string, number[]>();
  let finished = 0;
  let errors = 0;
  let non2xx = 0;
  const start = performance.now();
  return new Promise((resolve) => {
    const settle = (scheduled: number, group: string, failed: boolean) => {
      if (failed) errors++;
      const ms = performance.now() - scheduled;
      latencies[finished++] = ms;
      const inGroup = groups.get(group);
      if (inGroup) inGroup.push(ms);
      else groups.set(group, [ms]);
      if (finished < total) return;
      agent.destroy();
      const byGroup = Object.fromEntries([...groups].map(([name, values]) => [name, latency(values)]));
      resolve({ ...latency(latencies), seconds: (performance.now() - start) / 1000, sendSeconds: (lastSent - start) / 1000, errors, non2xx, groups: byGroup });
    };
    let lastSent = start;
    const send = (scheduled: number) => {
      lastSent = performance.now();
      let settled = false;
      const path = nextPath();
      const group = groupOf(path);
      const once = (failed: boolean) => {
        if (settled) return;
        settled = true;
        settle(scheduled, group, failed);
      };
      const outgoing = request({ hostname, port, path, agent, timeout: timeoutMs }, (response) => {
        if (response.statusCode! < 200 || response.statusCode! > 299) non2xx++;
        response.on('error', () => once(true));
        response.on('end', () => once(false));
        response.resume();
      });
      outgoing.on('timeout', () => outgoing.destroy(new Error('timed out')));
      outgoing.on('error', () => once(true));
      outgoing.end();
    };
    let sent = 0;
    const dispatch = () => {
      const due = Math.min(total, Math.floor(((performance.now() - start) * rate) / 1000) + 1);
      for (; sent < due; sent++) send(start + (sent * 1000) / rate);
      if (sent < total) setTimeout(dispatch, 1);
    };
    dispatch();
  });
}
