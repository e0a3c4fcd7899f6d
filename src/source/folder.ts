import { readdir, realpath, stat } from 'node:fs/promises';
import { extname, join, sep } from 'node:path';
import { LRUCache } from 'lru-cache';
import { notFound, ServerError } from '../errors.js';
import { checkIdentifier, isServable, printable } from './identifier.js';
import { LocalFiles } from './local-files.js';
import type { ImageSource, SourceRef } from './source.js';

/** Tried in order when the identifier names no file as it is ("chart" → "chart.tif"). */
const EXTENSIONS = ['.tif', '.tiff', '.jpg', '.jpeg', '.png', '.webp', '.gif', '.avif', '.jp2'];

/**
 * Serves files below one folder. The identifier is a path relative to the root; the resolved
 * real path (symlinks followed) must stay inside the root's real path.
 */
export class FolderSource implements ImageSource {
  /**
   * Recent answers (found or not), for `recheckMs`: a viewer asks for dozens of tiles of one
   * image at once, and each would otherwise cost a realpath and a stat per candidate name.
   * A changed or new file is noticed within that time.
   */
  private readonly recent: LRUCache<string, Promise<SourceRef>> | undefined;
  private readonly files: LocalFiles;

  private constructor(
    private readonly root: string,
    recheckMs: number,
    openFiles: number,
  ) {
    this.recent = recheckMs > 0 ? new LRUCache({ max: 10_000, ttl: recheckMs }) : undefined;
    this.files = new LocalFiles(openFiles);
  }

  /**
   * Fails at start-up, with a message naming the setting, if the folder is not usable.
   * `openFiles` bounds the files kept open for range reads (stored tiles).
   */
  static async open(root: string, recheckMs = 0, openFiles = 64): Promise<FolderSource> {
    let real: string;
    try {
      real = await realpath(root);
    } catch {
      throw new ServerError('SOURCE_ROOT_MISSING', `IIIF_FILE_ROOT "${root}" does not exist`);
    }
    if (!(await stat(real)).isDirectory()) throw new ServerError('SOURCE_ROOT_NOT_FOLDER', `IIIF_FILE_ROOT "${root}" is not a folder`);
    return new FolderSource(real, recheckMs, openFiles);
  }

  async resolve(identifier: string): Promise<SourceRef> {
    // Checked before it is remembered: refused identifiers (up to a URL's length each) must
    // neither take places in the memory of recent answers nor push real images out of it.
    checkIdentifier(identifier);
    if (!this.recent) return this.lookup(identifier);
    let answer = this.recent.get(identifier);
    if (!answer) {
      answer = this.lookup(identifier);
      this.recent.set(identifier, answer);
    }
    return answer;
  }

  private async lookup(identifier: string): Promise<SourceRef> {
    for (const candidate of [identifier, ...EXTENSIONS.map((ext) => identifier + ext)]) {
      const ref = await this.tryFile(identifier, join(this.root, candidate));
      if (ref) return ref;
    }
    throw notFound(`no image with identifier "${printable(identifier)}"`);
  }

  /**
   * Image files below the root (by extension), depth-first in name order, so identifiers come
   * out sorted segment by segment. Hidden entries and names no identifier can take are skipped;
   * symlinked folders are not entered (no loops, nothing outside the root), symlinked files are
   * listed only when they resolve inside the root, exactly as resolve() would serve them.
   */
  async list(limit: number): Promise<string[]> {
    const found: string[] = [];
    const walk = async (folder: string, prefix: string): Promise<void> => {
      const entries = await readdir(folder, { withFileTypes: true }).catch(() => []);
      entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
      for (const entry of entries) {
        if (found.length >= limit) return;
        if (entry.name.startsWith('.')) continue;
        const identifier = prefix + entry.name;
        if (entry.isDirectory()) {
          await walk(join(folder, entry.name), `${identifier}/`);
        } else if (
          EXTENSIONS.includes(extname(entry.name).toLowerCase()) &&
          isServable(identifier) &&
          (entry.isFile() || (entry.isSymbolicLink() && (await this.tryFile(identifier, join(folder, entry.name)))))
        ) {
          found.push(identifier);
        }
      }
    };
    await walk(this.root, '');
    return found;
  }

  private async tryFile(identifier: string, path: string): Promise<SourceRef | undefined> {
    let real: string;
    try {
      real = await realpath(path);
    } catch {
      return undefined;
    }
    // A symlink may point anywhere; only what really lies under the root is served.
    if (!real.startsWith(this.root + sep)) return undefined;
    const info = await stat(real).catch(() => undefined);
    if (!info?.isFile()) return undefined;
    const version = `${Math.trunc(info.mtimeMs)}-${info.size}`;
    return { identifier, version, lastModified: info.mtime, file: this.files.file(real, info.size, version) };
  }

  close(): void {
    this.files.clear();
  }
}
