import { readSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { LRUCache } from 'lru-cache';
import { fileKey } from '../cache/keys.js';
import { checkRange, OutsideImage, type RangeReader } from './range-reader.js';
import type { ImageFile } from './source.js';

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
 * Reads up to this size are synchronous. A page-cached 10–50 KB read (a stored tile) takes
 * ~4 µs that way against ~15–40 µs of CPU through the libuv thread pool (measured here), and
 * stored tiles are small and hot; a read that does go to disk blocks the event loop for one
 * disk access, which iipsrv accepts on every request. Larger reads stay asynchronous.
 */
const SYNC_READ_LIMIT = 256 * 1024;

/**
 * Local files read by range, keeping a bounded set of them open: a viewer asks for dozens of
 * tiles of one image, and opening and closing the file for each would cost more than the
 * read. Keyed by path and version, so a replaced file is opened afresh.
 */
export class LocalFiles {
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

  /** The file at `path`, `size` bytes long in this `version`. */
  file(path: string, size: number, version: string): ImageFile {
    const reader: RangeReader = { size, read: (offset, length) => this.read(path, version, size, offset, length) };
    return { reader, whole: async () => path, onDisk: true };
  }

  /** Closes every idle handle (shutdown, purge). */
  clear(): void {
    this.files.clear();
  }

  private async read(path: string, version: string, size: number, offset: number, length: number): Promise<Buffer> {
    checkRange(size, offset, length);
    const file = await this.acquire(path, version);
    try {
      const bytes = Buffer.allocUnsafe(length);
      const bytesRead =
        length <= SYNC_READ_LIMIT ? readSync(file.handle.fd, bytes, 0, length, offset) : (await file.handle.read(bytes, 0, length, offset)).bytesRead;
      // The file is shorter than when it was resolved: it is being replaced.
      if (bytesRead !== length) throw new OutsideImage(`the file ended ${length - bytesRead} bytes early`);
      return bytes;
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
      else {
        file = new SharedFile(handle);
        this.files.set(key, file);
      }
    }
    file.users++;
    return file;
  }
}
