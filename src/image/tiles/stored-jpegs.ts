import type { RangeReader } from '../../source/range-reader.js';
import { standaloneJpeg } from './jpeg-tile.js';
import type { TileSpot } from './locate.js';
import { readStoredTile } from './tile-reader.js';
import type { TiffPage } from './tiff-layout.js';

/**
 * The spot's stored tiles as they lie in the file, in its grid order, read by range together
 * (adjacent tiles are adjacent bytes, which a remote source fetches in one request).
 */
export function readStoredTiles(reader: RangeReader, spot: TileSpot): Promise<Buffer[]> {
  return Promise.all(spot.indexes.map((index) => readStoredTile(reader, spot.page, index)));
}

/**
 * Stored tiles of one page as standalone JPEGs (see jpeg-tile.ts), in the same order; undefined
 * when any of them cannot stand alone (the caller then decodes the page through libtiff).
 */
export function standaloneTiles(stored: readonly Buffer[], page: TiffPage): Buffer[] | undefined {
  const jpegs: Buffer[] = [];
  for (const tile of stored) {
    const jpeg = standaloneJpeg(tile, page);
    if (!jpeg) return undefined;
    jpegs.push(jpeg);
  }
  return jpegs;
}
