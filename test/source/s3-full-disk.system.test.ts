import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { S3Store } from './s3-store.js';
import { s3App, type S3App } from './s3-app.js';
import { expectTileOf, scan, tileUrl } from './s3-scan.js';

// A cache folder on a real, small file system that fills up: a tmpfs, so this needs the right
// to mount one (scripts/system/tmpfs.sh checks it).
let store: S3Store;
beforeAll(async () => {
  store = await S3Store.start();
  await store.put('scan.tif', await scan(200));
}, 60_000);
afterAll(() => store.close());

const apps: S3App[] = [];
async function open(cacheDir: string): Promise<S3App> {
  const app = await s3App(store, cacheDir);
  apps.push(app);
  return app;
}

describe('S3 ranged reads with a cache folder that fills up', () => {
  it('the cache folder filling up (ENOSPC): requests succeed from memory, the cache says degraded, nothing half-written is served later', async () => {
    const mount = await mkdtemp(join(tmpdir(), 'iiif-full-'));
    // A real small file system: writes fail with ENOSPC once it is full.
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', mount]);
    try {
      const dir = join(mount, 'cache');
      await mkdir(dir);
      const s3 = await open(dir);
      await s3.app.inject('/iiif/3/scan.tif/info.json');
      const tiles = await Promise.all(Array.from({ length: 12 }, (_, i) => s3.app.inject(tileUrl('scan.tif', i, (i * 5) % 12))));
      expect(tiles.map((r) => r.statusCode)).toEqual(Array(12).fill(200));
      // Asked again, so their blocks go to disk (a block is written on its second use).
      const again = await Promise.all(Array.from({ length: 12 }, (_, i) => s3.app.inject(tileUrl('scan.tif', i, (i * 5) % 12, 'png'))));
      expect(again.map((r) => r.statusCode)).toEqual(Array(12).fill(200));
      await expectTileOf(tiles[11]!.rawPayload, 11, (11 * 5) % 12, 200);
      expect((await s3.app.inject('/health')).statusCode).toBe(200);
      await s3.app.close(); // its cache writes finish (or fail)
      expect(await s3.metric('iiif_source_cache_degraded')).toBe(1);
      // Whatever made it to disk is whole: a restart serves every tile right.
      const restarted = await open(dir);
      for (let i = 0; i < 12; i++) await expectTileOf((await restarted.app.inject(tileUrl('scan.tif', i, (i * 5) % 12, 'webp'))).rawPayload, i, (i * 5) % 12, 200);
    } finally {
      await Promise.all(apps.splice(0).map((a) => a.app.close()));
      execFileSync('umount', [mount]);
    }
  });
});
