import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { IO_THREADS, sizeThreadPool, threadPoolSize } from '../src/thread-pool.js';

describe('thread pool', () => {
  it('holds every render of both lanes plus threads for file work', () => {
    // The container image's lanes: 4 cheap, 1 expensive. Its old pool of 4 let renders take every thread.
    const lanes = loadConfig({ IIIF_RENDER_CONCURRENCY: '4' });
    expect(threadPoolSize(lanes)).toBe(4 + 1 + IO_THREADS);
    expect(threadPoolSize({ renderConcurrency: 1000, largeRenderConcurrency: 1000 })).toBe(1024);
  });

  it.each([
    [undefined, '9'],
    ['4', '9'],
    ['16', '16'],
    ['many', '9'],
    ['5000', '1024'],
  ])('UV_THREADPOOL_SIZE=%s becomes %s (never below what the lanes need)', (given, expected) => {
    const env: Record<string, string | undefined> = { UV_THREADPOOL_SIZE: given };
    sizeThreadPool(env, { renderConcurrency: 4, largeRenderConcurrency: 1 });
    expect(env.UV_THREADPOOL_SIZE).toBe(expected);
  });
});
