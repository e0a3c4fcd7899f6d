import { standaloneJpeg } from './jpeg-tile.js';
import type { TileSpot } from './locate.js';
import type { TileReader } from './tile-reader.js';

/**
 * The spot's stored tiles as standalone JPEGs, in its grid order; undefined when any of them
 * cannot stand alone (the caller then decodes the page through libtiff).
 */
export async function readJpegTiles(reader: TileReader, path: string, version: string, spot: TileSpot): Promise<Buffer[] | undefined> {
  const jpegs: Buffer[] = [];
  for (const index of spot.indexes) {
    const jpeg = standaloneJpeg(await reader.read(path, version, spot.page, index), spot.page);
    if (!jpeg) return undefined;
    jpegs.push(jpeg);
  }
  return jpegs;
}
