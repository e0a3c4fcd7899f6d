import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BlockCache } from '../../src/cache/block-cache.js';
import { Metrics } from '../../src/metrics.js';
import { BlockReads, type RemoteObject } from '../../src/source/block-reads.js';

const BLOCK = 4096;
const quiet = { warn: () => undefined, info: () => undefined };

/**
 * Block reads over a real disk cache, with memory for `memoryBlocks` blocks; the store is an
 * object's bytes in memory, and every fetch is counted per block.
 */
async function setUp(memoryBlocks: number) {
  const cache = await BlockCache.open<unknown>({ dir: await mkdtemp(join(tmpdir(), 'iiif-block-reads-')), maxBytes: 10 * 1024 * 1024, metrics: new Metrics(), log: quiet });
  const bytes = randomBytes(64 * BLOCK);
  const object: RemoteObject = { ...cache.object('scan.tif', 'v1'), size: bytes.length };
  const fetched: number[] = [];
  const reads = new BlockReads(
    cache,
    async (_object, start, end) => {
      for (let index = start / BLOCK; index < end / BLOCK; index++) fetched.push(index);
      return bytes.subarray(start, end);
    },
    { blockBytes: BLOCK, maxFetchBytes: BLOCK, memoryBytes: memoryBlocks * BLOCK },
  );
  const read = async (index: number) => expect((await reads.read(object, index * BLOCK, BLOCK)).equals(bytes.subarray(index * BLOCK, (index + 1) * BLOCK))).toBe(true);
  return { cache, object, bytes, fetched, read, reads };
}

describe('block reads: what goes to disk', () => {
  it('a block read once stays in memory only; read again, it is written', async () => {
    const { cache, object, fetched, read } = await setUp(8);
    await read(3);
    await cache.settle();
    expect(cache.hasBlock(object, 3)).toBe(false);
    await read(3);
    await cache.settle();
    expect(cache.hasBlock(object, 3)).toBe(true);
    expect(fetched).toEqual([3]);
  });

  it('a block that left memory unused is written when it is fetched again, then read from disk', async () => {
    const { cache, object, fetched, read } = await setUp(2);
    for (const index of [0, 1, 2, 3]) await read(index); // 0 and 1 leave memory, each read once
    await cache.settle();
    expect([0, 1, 2, 3].filter((index) => cache.hasBlock(object, index))).toEqual([]);
    await read(0); // fetched a second time: now it is written
    await cache.settle();
    expect(cache.hasBlock(object, 0)).toBe(true);
    for (const index of [4, 5]) await read(index); // 0 leaves memory again
    await read(0); // from disk
    expect(fetched).toEqual([0, 1, 2, 3, 0, 4, 5]);
  });

  it('blocks read ahead are no use: read there any number of times, nothing is written', async () => {
    const { cache, object, fetched, read, reads } = await setUp(8);
    await reads.readAhead(object, 2 * BLOCK + 10, 2 * BLOCK); // blocks 2, 3 and 4
    for (let i = 0; i < 3; i++) for (const index of [2, 3, 4]) await read(index);
    await cache.settle();
    expect([2, 3, 4].filter((index) => cache.hasBlock(object, index))).toEqual([]);
    expect(fetched).toEqual([2, 3, 4]);
  });

  it('preloaded pieces answer reads inside them without a fetch; reads outside fetch as usual', async () => {
    const { object, bytes, fetched, read, reads } = await setUp(16);
    expect(reads.preload(object, [{ offset: 5 * BLOCK + 100, bytes: bytes.subarray(5 * BLOCK + 100, 7 * BLOCK) }])).toBe(true);
    expect((await reads.read(object, 6 * BLOCK, 500)).equals(bytes.subarray(6 * BLOCK, 6 * BLOCK + 500))).toBe(true);
    expect(fetched).toEqual([]);
    await read(8);
    expect(fetched).toEqual([8]);
  });

  it('pieces larger than their share of memory are refused; a purge drops the ones kept', async () => {
    const { object, bytes, fetched, reads } = await setUp(16); // 64 KiB: a quarter for pieces
    expect(reads.preload(object, [{ offset: 0, bytes: bytes.subarray(0, 5 * BLOCK) }])).toBe(false);
    expect(reads.preload(object, [{ offset: 0, bytes: bytes.subarray(0, 3 * BLOCK) }])).toBe(true);
    await reads.read(object, 100, 200);
    expect(fetched).toEqual([]);
    reads.forget(object.folder.slice(0, object.folder.indexOf('/')));
    await reads.read(object, 100, 200);
    expect(fetched).toEqual([0]);
  });
});
