import { readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import { fileKey } from '../../cache/keys.js';
import { undecodableSource } from '../../errors.js';
import type { TiffPage } from './tiff-layout.js';

/** An open file shared by concurrent reads; closed once evicted and no read is using it. */
class SharedFile {
  users = 0;
  evicted = false;

  constructor(readonly handle: FileHandle) {}

  release(): void {
    this.users--;
    this.closeIfUnused();
  }

  closeIfUnused(): void {
    if (this.evicted && this.users === 0) void this.handle.close().catch(() => undefined);
  }
}

/**
 * Tiles up to this size are read synchronously. A page-cached 10–50 KB read takes ~4 µs that
 * way against ~15–40 µs of CPU through the libuv thread pool (measured here), and stored tiles
 * are small and hot; a read that does go to disk blocks the event loop for one disk access,
 * which iipsrv accepts on every request. Larger reads stay asynchronous.
 */
const SYNC_READ_LIMIT = 256 * 1024;

/**
 * Reads stored tiles as they lie in the file (jpeg-tile.ts makes them standalone JPEGs), keeping
 * a bounded set of source files open: a viewer asks for dozens of tiles of one image, and
 * opening and closing the file for each would cost more than the read. Keyed by path and source
 * version, so a replaced file is opened afresh.
 */
export class TileReader {
  private readonly files: LRUCache<string, SharedFile>;

  constructor(maxOpenFiles: number) {
    this.files = new LRUCache({
      max: maxOpenFiles,
      dispose: (file) => {
        file.evicted = true;
        file.closeIfUnused();
      },
    });
  }

  async read(path: string, version: string, page: TiffPage, index: number): Promise<Buffer> {
    const file = await this.acquire(path, version);
    try {
      const length = page.tileByteCounts[index]!;
      const tile = Buffer.allocUnsafe(length);
      const offset = page.tileOffsets[index]!;
      const bytesRead =
        length <= SYNC_READ_LIMIT
          ? readSync(file.handle.fd, tile, 0, length, offset)
          : (await file.handle.read(tile, 0, length, offset)).bytesRead;
      if (bytesRead !== length) throw undecodableSource('the stored image is truncated: a tile is missing bytes');
      return tile;
    } finally {
      file.release();
    }
  }

  /** The shared handle, counted as in use. No await between lookup and count: eviction cannot slip in. */
  private async acquire(path: string, version: string): Promise<SharedFile> {
    const key = fileKey(path, version);
    let file = this.files.get(key);
    if (!file) {
      const handle = await open(path, 'r');
      file = this.files.get(key);
      // Another request opened it meanwhile: use the shared one, drop ours.
      if (file) void handle.close().catch(() => undefined);
      else file = this.adopt(key, handle);
    }
    file.users++;
    return file;
  }

  private adopt(key: string, handle: FileHandle): SharedFile {
    const file = new SharedFile(handle);
    this.files.set(key, file);
    return file;
  }

  /** Closes every idle handle (shutdown, purge). */
  clear(): void {
    this.files.clear();
  }
}
