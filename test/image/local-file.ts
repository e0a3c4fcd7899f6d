import { stat } from 'node:fs/promises';
import type { Level, StoredLevels } from '../../src/image/metadata/types.js';
import { LocalFiles } from '../../src/source/local-files.js';
import type { ImageFile } from '../../src/source/source.js';

const files = new LocalFiles(16);

/** A local file as the image pipeline reads it (by range, or whole). */
export async function localFile(path: string): Promise<ImageFile> {
  const info = await stat(path);
  return files.file(path, info.size, `${info.mtimeMs}-${info.size}`);
}

/** Every stored level, read through to the smallest. */
export async function allLevels(levels: StoredLevels): Promise<Level[]> {
  const found: Level[] = [];
  for (let index = 0; ; index++) {
    const level = await levels.at(index);
    if (!level) return found;
    found.push(level);
  }
}
