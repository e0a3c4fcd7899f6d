import type { Config } from './config.js';

/**
 * Threads kept for file-system and other short work (stat and open of sources, stored-tile
 * reads, cache writes, probes) beside the renders. Each sharp pipeline holds one pool thread for
 * as long as it runs, so with the pool no larger than the render lanes (the image's old
 * defaults: 4 cheap renders, UV_THREADPOOL_SIZE=4), stored tiles that need only a stat and a
 * read waited seconds behind AVIF encodes.
 */
export const IO_THREADS = 4;

/** libuv's maximum pool size. */
const MAX_THREADS = 1024;

/** The pool the lanes need: a thread per render that may run at once in either lane, plus IO_THREADS. */
export function threadPoolSize(config: Pick<Config, 'renderConcurrency' | 'largeRenderConcurrency'>): number {
  return Math.min(MAX_THREADS, config.renderConcurrency + config.largeRenderConcurrency + IO_THREADS);
}

/**
 * Sets UV_THREADPOOL_SIZE in `env` (process.env) to what the lanes need, unless it already asks
 * for more; returns the size. libuv reads the variable once, when the pool first starts, so this
 * must run before anything queues work on it: the server's entry points call it before they
 * import the server. Node 22 (the container's) starts the pool lazily, so this takes effect;
 * Node 20's ES module loader reads files through the pool before the first line of the entry
 * runs, so there the environment must carry the value (the container image and the ECS task set
 * it from the same formula, and the benchmarks pass it).
 */
export function sizeThreadPool(env: Record<string, string | undefined>, config: Pick<Config, 'renderConcurrency' | 'largeRenderConcurrency'>): number {
  const given = Number(env.UV_THREADPOOL_SIZE);
  const size = Math.max(threadPoolSize(config), Number.isSafeInteger(given) ? Math.min(given, MAX_THREADS) : 0);
  env.UV_THREADPOOL_SIZE = String(size);
  return size;
}
