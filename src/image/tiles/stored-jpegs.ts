import type { RangeReader } from '../../source/range-reader.js';
import { standaloneJpeg } from './jpeg-tile.js';
import type { TileSpot } from './locate.js';
import { readStoredTile } from './tile-reader.js';

/**
 * The spot's stored tiles as standalone JPEGs, in its grid order, read by range together
 * (adjacent tiles are adjacent bytes, which a remote source fetches in one request); undefined
 * when any of them cannot stand alone (the caller then decodes the page through libtiff).
 */
export async function readJpegTiles(reader: RangeReader, spot: TileSpot): Promise<Buffer[] | undefined> {
  const stored = await Promise.all(spot.indexes.map((index) => readStoredTile(reader, spot.page, index)));
  const jpegs: Buffer[] = [];
  for (const tile of stored) {
    const jpeg = standaloneJpeg(tile, spot.page);
    if (!jpeg) return undefined;
    jpegs.push(jpeg);
  }
  return jpegs;
}
