import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockCache } from '../../src/cache/block-cache.js';
import { CacheUnavailableError, IncompleteWriteError } from '../../src/cache/disk-state.js';
import { Metrics } from '../../src/metrics.js';

const quiet = { warn: () => undefined, info: () => undefined };

async function open(dir?: string, maxBytes = 10 * 1024 * 1024) {
  const folder = dir ?? (await mkdtemp(join(tmpdir(), 'iiif-blocks-')));
  return { dir: folder, cache: await BlockCache.open<{ size: number }>({ dir: folder, maxBytes, metrics: new Metrics(), log: quiet }) };
}

/** Every file below a folder with its real size on disk. */
async function filesIn(dir: string): Promise<Array<{ path: string; bytes: number }>> {
  const entries = await readdir(dir, { withFileTypes: true, recursive: true });
  return Promise.all(
    entries.filter((e) => e.isFile()).map(async (e) => ({ path: join(e.parentPath, e.name), bytes: (await stat(join(e.parentPath, e.name))).blocks * 512 })),
  );
}

describe('block cache', () => {
  it('stores blocks per object version, so two versions never share bytes', async () => {
    const { cache } = await open();
    const [a1, a2] = [cache.object('a.tif', 'v1'), cache.object('a.tif', 'v2')];
    await cache.writeBlock(a1, 0, Buffer.from('version one'));
    expect(cache.hasBlock(a1, 0)).toBe(true);
    expect(cache.hasBlock(a2, 0)).toBe(false);
    expect((await cache.readBlock(a1, 0))!.toString()).toBe('version one');
    expect(await cache.readBlock(a2, 0)).toBeUndefined();
  });

  it('keeps its real size on disk within the bound, evicting the least recently used', async () => {
    const bound = 256 * 1024;
    const { dir, cache } = await open(undefined, bound);
    const object = cache.object('big.tif', 'v1');
    for (let index = 0; index < 12; index++) {
      await cache.writeBlock(object, index, randomBytes(32 * 1024));
      expect(await cache.readBlock(object, 0)).toBeDefined(); // block 0 stays recently used
      const files = await filesIn(dir);
      expect(files.reduce((sum, f) => sum + f.bytes, 0)).toBeLessThanOrEqual(bound);
    }
    expect(cache.bytes).toBe((await filesIn(dir)).reduce((sum, f) => sum + f.bytes, 0));
    expect(cache.hasBlock(object, 11)).toBe(true);
    expect(cache.hasBlock(object, 0)).toBe(true);
    expect(cache.hasBlock(object, 1)).toBe(false);
  });

  it('detects a damaged block on disk, deletes it and answers undefined', async () => {
    const { dir, cache } = await open();
    const object = cache.object('a.tif', 'v1');
    await cache.writeBlock(object, 3, randomBytes(5000));
    const [file] = (await filesIn(dir)).map((f) => f.path);
    const bytes = await readFile(file!);
    bytes[2000]! ^= 1;
    await writeFile(file!, bytes);
    expect(await cache.readBlock(object, 3)).toBeUndefined();
    expect(cache.hasBlock(object, 3)).toBe(false);
    expect(await filesIn(dir)).toEqual([]);
    // Cut short, too.
    await cache.writeBlock(object, 4, randomBytes(5000));
    const [cut] = (await filesIn(dir)).map((f) => f.path);
    await writeFile(cut!, (await readFile(cut!)).subarray(0, 3000));
    expect(await cache.readBlock(object, 4)).toBeUndefined();
  });

  it('stores whole objects checked against their length', async () => {
    const { cache } = await open();
    const object = cache.object('a.png', 'v1');
    await expect(cache.putWhole(object, 100, (temp) => writeFile(temp, randomBytes(60)))).rejects.toBeInstanceOf(IncompleteWriteError);
    expect(await cache.wholePath(object, 100)).toBeUndefined();
    const path = await cache.putWhole(object, 100, (temp) => writeFile(temp, randomBytes(100)));
    expect(await cache.wholePath(object, 100)).toBe(path);
    await expect(cache.putWhole(object, 1e12, async () => undefined)).rejects.toBeInstanceOf(CacheUnavailableError);
  });

  it('remembers one record per key; a new version drops the old one with its files', async () => {
    const { cache } = await open();
    const old = cache.object('a.tif', 'v1');
    await cache.setRecord(old, { size: 10 });
    await cache.writeBlock(old, 0, Buffer.from('old'));
    const current = cache.object('a.tif', 'v2');
    await cache.setRecord(current, { size: 20 });
    expect(cache.record('a.tif')).toEqual({ version: 'v2', record: { size: 20 } });
    expect(cache.hasBlock(old, 0)).toBe(false);
    await cache.forgetRecord('a.tif');
    expect(cache.record('a.tif')).toBeUndefined();
  });

  it('is rebuilt from its folder after a restart; leftovers and unknown files are deleted', async () => {
    const { dir, cache } = await open();
    const object = cache.object('deep/a.tif', 'v1');
    await cache.setRecord(object, { size: 5 });
    await cache.writeBlock(object, 7, Buffer.from('seven'));
    await cache.putWhole(object, 5, (temp) => writeFile(temp, 'whole'));
    // Debris: an interrupted download, an old-style cache file, a stray folder, a temporary in a version folder.
    await writeFile(join(dir, '.tmp-interrupted'), randomBytes(100));
    await writeFile(join(dir, `${'a'.repeat(64)}-x.data`), randomBytes(100));
    await mkdir(join(dir, 'stray'));
    await writeFile(join(dir, object.folder, '.tmp-half-block'), randomBytes(10));
    const reopened = (await open(dir)).cache;
    expect(reopened.record('deep/a.tif')).toEqual({ version: 'v1', record: { size: 5 } });
    expect((await reopened.readBlock(reopened.object('deep/a.tif', 'v1'), 7))!.toString()).toBe('seven');
    expect(await readFile((await reopened.wholePath(object, 5))!, 'utf8')).toBe('whole');
    expect((await readdir(dir)).sort()).toEqual([object.folder.split('/')[0]]);
    expect(reopened.bytes).toBe(cache.bytes);
  });

  it('keeps blocks written in the background intact across a restart, with sizes as on disk, even after its folders were deleted', async () => {
    const { dir, cache } = await open();
    const object = cache.object('many.tif', 'v1');
    const blocks = Array.from({ length: 40 }, (_, i) => randomBytes(i === 39 ? 1000 : 64 * 1024));
    for (const [index, data] of blocks.entries()) cache.keepBlock(object, index, data);
    await cache.settle();
    expect(cache.bytes).toBe((await filesIn(dir)).reduce((sum, f) => sum + f.bytes, 0));
    // The folder it wrote into vanishes behind its back: the next writes make it again.
    await rm(join(dir, object.folder.split('/')[0]!), { recursive: true });
    for (const [index, data] of blocks.entries()) cache.keepBlock(object, index, data);
    await cache.settle();
    const reopened = (await open(dir)).cache;
    for (const [index, data] of blocks.entries()) expect((await reopened.readBlock(object, index))!.equals(data)).toBe(true);
    expect(reopened.bytes).toBe(cache.bytes);
    expect(reopened.bytes).toBe((await filesIn(dir)).reduce((sum, f) => sum + f.bytes, 0));
  });

  it('drops every version of a key on purge', async () => {
    const { dir, cache } = await open();
    await cache.writeBlock(cache.object('a.tif', 'v1'), 0, Buffer.from('x'));
    await cache.writeBlock(cache.object('a.tif', 'v2'), 0, Buffer.from('y'));
    await cache.writeBlock(cache.object('b.tif', 'v1'), 0, Buffer.from('z'));
    expect(await cache.dropKey('a.tif')).toBe(true);
    expect(await cache.dropKey('a.tif')).toBe(false);
    expect(await filesIn(dir)).toHaveLength(1);
  });

  it('degrades, never throws on open, when its folder cannot be written', async () => {
    const blocker = join(await mkdtemp(join(tmpdir(), 'iiif-blocks-')), 'a-file');
    await writeFile(blocker, 'not a folder');
    const { cache } = await open(join(blocker, 'cache'));
    expect(cache.isDegraded).toBe(true);
    await expect(cache.writeBlock(cache.object('a', 'v'), 0, Buffer.from('x'))).rejects.toBeInstanceOf(CacheUnavailableError);
    expect(await cache.readBlock(cache.object('a', 'v'), 0)).toBeUndefined();
  });
});
