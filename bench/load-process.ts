/**
 * autocannon (load-generator.ts) in a process of its own for each run. In one long benchmark
 * process the load generator's heap ended up in a storm of full collections (`--trace-gc`: a
 * Mark-Compact every 250–400 ms, pauses up to 50 ms, from about two minutes in), which stretched
 * the measured latency of whichever server was being measured then (W9 at 32 connections: p99
 * 68–71 ms in the first runs of `bench:compare`, 97–104 ms for both servers in the third).
 * A fresh process per run keeps the generator's own pauses out of the figures.
 */
import { fork } from 'node:child_process';
import type { Request, Result } from 'autocannon';
import autocannon from './load-generator.js';

/** One run: what autocannon takes, with the URL paths to request instead of request objects. */
export interface LoadRun {
  url: string;
  connections: number;
  timeout: number;
  duration?: number;
  amount?: number;
  sampleInt?: number;
  paths: string[];
  /** Each connection cycles through all paths from the start; else they are handed out one by one (Workload.prebuilt). */
  prebuilt?: boolean;
}

/** autocannon requests over `paths`: built once and cycled per connection, or handed out one by one. */
function requestsOver(paths: string[], prebuilt: boolean | undefined): Request[] {
  if (prebuilt) return paths.map((path) => ({ method: 'GET', path }));
  let next = 0;
  return [{ method: 'GET', setupRequest: (request) => ({ ...request, path: paths[next++ % paths.length]! }) }];
}

/** Runs `run` with autocannon in a new process and resolves to its result. */
export function loadInChild(run: LoadRun): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = fork(new URL(import.meta.url), ['--child'], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: Result | undefined;
    child.once('message', (message) => (result = message as Result));
    child.once('error', reject);
    child.once('exit', (code) => (result ? resolve(result) : reject(new Error(`the load generator exited with code ${code} without a result`))));
    child.send(run);
  });
}

if (process.argv[2] === '--child') {
  process.once('message', (message) => {
    const { paths, prebuilt, ...options } = message as LoadRun;
    autocannon({ ...options, requests: requestsOver(paths, prebuilt) }).then(
      (result) => process.send!(result, () => process.disconnect()),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
}
