import { copyFile, mkdtemp, readdir, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DiskCache, type Log } from '../../src/cache/disk-cache.js';
import { CacheUnavailableError, IncompleteWriteError } from '../../src/cache/disk-state.js';
import { Metrics } from '../../src/metrics.js';

const quiet: Log = { warn: () => undefined, info: () => undefined };

async function openCache(dir?: string, maxBytes = 1024 * 1024) {
  const folder = dir ?? (await mkdtemp(join(tmpdir(), 'disk-cache-')));
  const cache = await DiskCache.open<{ tag: string }>({ dir: folder, maxBytes, name: 'test', metrics: new Metrics(), log: quiet });
  return { cache, dir: folder };
}

const writing = (bytes: Buffer, promised = bytes.length) => async (temp: string) => {
  await writeFile(temp, bytes);
  return { size: promised, meta: { tag: 't' } };
};

describe('DiskCache', () => {
  it('stores a complete file with its metadata and finds it again', async () => {
    const { cache } = await openCache();
    const stored = await cache.put('a/b', writing(Buffer.alloc(5000, 1)));
    expect(stored).toMatchObject({ key: 'a/b', size: 5000, meta: { tag: 't' } });
    expect(cache.get('a/b')?.path).toBe(stored.path);
    expect(cache.get('other')).toBeUndefined();
  });

  it('throws away a file whose length does not match what the producer promised', async () => {
    const { cache, dir } = await openCache();
    await expect(cache.put('short', writing(Buffer.alloc(100), 200))).rejects.toBeInstanceOf(IncompleteWriteError);
    expect(cache.get('short')).toBeUndefined();
    expect(await readdir(dir)).toEqual([]);
    expect(cache.isDegraded).toBe(false);
  });

  it('deletes the temporary file when the producer fails', async () => {
    const { cache, dir } = await openCache();
    const failure = new Error('download failed');
    await expect(cache.put('x', async () => Promise.reject(failure))).rejects.toBe(failure);
    expect(await readdir(dir)).toEqual([]);
  });

  it('refuses a file larger than the whole bound without degrading', async () => {
    const { cache, dir } = await openCache(undefined, 1024 * 1024);
    await expect(cache.put('huge', writing(Buffer.alloc(2 * 1024 * 1024)))).rejects.toBeInstanceOf(CacheUnavailableError);
    expect(cache.isDegraded).toBe(false);
    expect(await readdir(dir)).toEqual([]);
  });

  it('counts a replaced entry once', async () => {
    const { cache } = await openCache();
    await cache.put('k', writing(Buffer.alloc(10_000, 1)));
    const once = cache.bytes;
    await cache.put('k', writing(Buffer.alloc(10_000, 2)));
    expect(cache.bytes).toBe(once);
  });

  it('rebuilds from the folder, dropping leftovers and entries whose sidecar does not match', async () => {
    const { cache, dir } = await openCache();
    const kept = await cache.put('kept', writing(Buffer.alloc(3000, 1)));
    const broken = await cache.put('broken', writing(Buffer.alloc(3000, 2)));
    await writeFile(broken.path, Buffer.alloc(10)); // data no longer matches its sidecar
    await writeFile(join(dir, '.tmp-leftover'), 'partial');
    await writeFile(join(dir, 'stray.data'), 'no sidecar');

    const { cache: reopened } = await openCache(dir);
    expect(reopened.get('kept')).toMatchObject({ path: kept.path, size: 3000, meta: { tag: 't' } });
    expect(reopened.get('broken')).toBeUndefined();
    expect((await readdir(dir)).sort()).toEqual([kept.path.split('/').at(-1)!, kept.path.split('/').at(-1)!.replace('.data', '.json')].sort());
    expect(reopened.bytes).toBeGreaterThan(0);
    expect(reopened.bytes).toBeLessThan(cache.bytes); // the broken entry no longer counts
  });

  it('keeps the newer version when a crash left two for one key', async () => {
    const { cache, dir } = await openCache();
    const v1 = await cache.put('k', writing(Buffer.alloc(3000, 1)));
    const crashed = join(dir, `${basename(v1.path).split('-')[0]}-crashed`);
    await copyFile(v1.path, `${crashed}.data`);
    await copyFile(v1.path.replace(/\.data$/, '.json'), `${crashed}.json`);
    const past = new Date(Date.now() - 3_600_000);
    await utimes(`${crashed}.data`, past, past);
    await utimes(`${crashed}.json`, past, past);
    await cache.put('k', writing(Buffer.alloc(4000, 2)));

    const { cache: reopened } = await openCache(dir);
    expect(reopened.get('k')?.size).toBe(4000);
    expect((await readdir(dir)).filter((name) => name.includes('crashed'))).toEqual([]);
  });

  it('starts degraded, without throwing, when its folder cannot be created', async () => {
    const file = join(await mkdtemp(join(tmpdir(), 'disk-cache-')), 'file');
    await writeFile(file, 'x');
    const { cache } = await openCache(join(file, 'cache'));
    expect(cache.isDegraded).toBe(true);
    await expect(cache.put('k', writing(Buffer.alloc(10)))).rejects.toBeInstanceOf(CacheUnavailableError);
  });
});
