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

export interface PacedResult {
  /** Requests sent and answered (or failed). */
  requests: number;
  seconds: number;
  p99Ms: number;
  errors: number;
  non2xx: number;
}

export async function pacedLoad(url: string, rate: number, seconds: number, nextPath: () => string, timeoutMs: number): Promise<PacedResult> {
  const { hostname, port } = new URL(url);
  const agent = new Agent({ keepAlive: true, maxSockets: 1024 });
  const total = Math.max(1, Math.round(rate * seconds));
  const latencies = new Float64Array(total);
  let finished = 0;
  let errors = 0;
  let non2xx = 0;
  const start = performance.now();
  return new Promise((resolve) => {
    const settle = (scheduled: number, failed: boolean) => {
      if (failed) errors++;
      latencies[finished++] = performance.now() - scheduled;
      if (finished < total) return;
      agent.destroy();
      const sorted = latencies.sort();
      resolve({ requests: total, seconds: (performance.now() - start) / 1000, p99Ms: Math.round(sorted[Math.ceil(total * 0.99) - 1]!), errors, non2xx });
    };
    const send = (scheduled: number) => {
      let settled = false;
      const once = (failed: boolean) => {
        if (settled) return;
        settled = true;
        settle(scheduled, failed);
      };
      const outgoing = request({ hostname, port, path: nextPath(), agent, timeout: timeoutMs }, (response) => {
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
