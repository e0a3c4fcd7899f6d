import sharp from 'sharp';
import type { Config } from '../../config.js';

/**
 * One sharp configuration per process, made at start-up. Parallelism comes from concurrent
 * requests (the libuv thread pool, UV_THREADPOOL_SIZE), so each pipeline gets few libvips
 * threads; the operation cache is bounded in memory and never caches open files, so a
 * replaced source file is always read afresh.
 */
export function configureSharp(config: Pick<Config, 'sharpConcurrency' | 'sharpCacheMb'>): void {
  sharp.concurrency(config.sharpConcurrency);
  sharp.cache(config.sharpCacheMb > 0 ? { memory: config.sharpCacheMb, files: 0, items: 200 } : false);
}
