import { undecodableSource } from '../../errors.js';
import { OutsideImage, type RangeReader } from '../../source/range-reader.js';
import type { TiffPage } from './tiff-layout.js';

/**
 * One stored tile's bytes as they lie in the file, read by range (jpeg-tile.ts makes a JPEG
 * tile a standalone JPEG). Tags that point past the end of the file are a damaged image: 422.
 */
export async function readStoredTile(reader: RangeReader, page: TiffPage, index: number): Promise<Buffer> {
  try {
    return await reader.read(page.tileOffsets[index]!, page.tileByteCounts[index]!);
  } catch (error) {
    if (error instanceof OutsideImage) throw undecodableSource('the stored image is truncated: a tile is missing bytes');
    throw error;
  }
}
