import { undecodableSource } from '../../errors.js';
import { OutsideImage, type RangeReader } from '../../source/range-reader.js';
import type { TiffPage } from './tiff-layout.js';

/**
 * One stored JPEG tile as a complete JPEG stream: its bytes, read by range, joined with the
 * page's shared tables.
 */
export async function readStoredTile(reader: RangeReader, page: TiffPage, index: number): Promise<Buffer> {
  let tile: Buffer;
  try {
    tile = await reader.read(page.tileOffsets[index]!, page.tileByteCounts[index]!);
  } catch (error) {
    if (error instanceof OutsideImage) throw undecodableSource('the stored image is truncated: a tile is missing bytes');
    throw error;
  }
  if (!page.jpegTables) return tile;
  // Tables: SOI … EOI; tile: SOI … EOI. Drop the tables' EOI and the tile's SOI.
  return Buffer.concat([page.jpegTables.subarray(0, -2), tile.subarray(2)]);
}
