import { readFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess, type ServerProcess } from '../../scripts/cluster/server-process.js';
import { compacted, retainedBytes } from '../../src/cache/result-cache.js';
import { makeFixtures } from '../fixtures.js';

const CACHE_BYTES = 4 * 2 ** 20;

describe('what a kept result pins', () => {
  it('a 1×1 GIF from sharp is kept as its 43 bytes, in an allocation of its own', async () => {
    const gif = await sharp({ create: { width: 1, height: 1, channels: 3, background: '#f00' } }).gif().toBuffer();
    const kept = compacted({ data: gif, level: 0, method: 'sharp' });
    expect(kept.data.equals(gif)).toBe(true);
    expect(kept.data.buffer.byteLength).toBe(gif.length);
    expect(retainedBytes(kept, 'k')).toBeLessThan(400);
  });
});

// The attack, against the compiled server in its own process: many distinct 1×1 GIFs, each
// tiny by byteLength but (before the fix) pinning about 18 KB of libvips memory in the cache.
describe('many distinct 1×1 GIFs', () => {
  let server: ServerProcess;
  let port: number;
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });

  beforeAll(async () => {
    const { root } = await makeFixtures();
    server = await startServerProcess({ IIIF_FILE_ROOT: root, IIIF_RESULT_CACHE_BYTES: String(CACHE_BYTES), IIIF_ACCESS_LOG: 'false' });
    ({ port } = server);
  });
  afterAll(() => {
    agent.destroy();
    server.child.kill('SIGKILL');
  });

  const get = (path: string) =>
    new Promise<{ status: number; body: Buffer }>((resolve, reject) => {
      request({ host: '127.0.0.1', port, path, agent }, (response) => {
        const chunks: Buffer[] = [];
        response.on('data', (chunk: Buffer) => chunks.push(chunk));
        response.on('end', () => resolve({ status: response.statusCode ?? 0, body: Buffer.concat(chunks) }));
      })
        .on('error', reject)
        .end();
    });

  const rss = async () => Number(/^VmRSS:\s+(\d+) kB/m.exec(await readFile(`/proc/${server.child.pid}/status`, 'utf8'))![1]) * 1024;
  const cacheBytes = async () => Number(/^iiif_result_cache_bytes (\d+)/m.exec((await get('/metrics')).body.toString())![1]);

  /** Asks for `count` distinct 1×1 GIFs of the 400×200 chart, from `first` on, 8 at a time. */
  async function gifs(first: number, count: number): Promise<void> {
    let next = first;
    const worker = async () => {
      while (next < first + count) {
        const n = next++;
        const response = await get(`/iiif/3/quadrants.png/${n % 400},${Math.floor(n / 400) % 200},1,1/1,1/0/default.gif`);
        expect(response.status).toBe(200);
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  }

  it('RSS grows by what the cache reports, within its bound (8,000 of them pinned ~150 MB before)', async () => {
    // Warm up: allocator arenas, JIT, libvips' own caches.
    await gifs(0, 1000);
    const before = await rss();
    await gifs(1000, 8000);
    const reported = await cacheBytes();
    const grown = (await rss()) - before;
    expect(reported).toBeLessThanOrEqual(CACHE_BYTES);
    // Bounded by the cache plus allocator noise, far from 8,000 × 18 KB.
    expect(grown).toBeLessThan(reported + 48 * 2 ** 20);
  }, 120_000);
});
