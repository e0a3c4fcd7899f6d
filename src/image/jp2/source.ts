import { undecodableSource } from '../../errors.js';
import { head, type RangeReader } from '../../source/range-reader.js';
import type { ImageMetadata, Level, StoredLevels } from '../metadata/types.js';
import { JP2_HEADER_PREFIX_BYTES, levelSize, readJp2Header, type Jp2Header } from './codestream.js';

const J2K_CODESTREAM = Buffer.from([0xff, 0x4f, 0xff, 0x51]);
const JP2_SIGNATURE = Buffer.from([0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]);

/** How many of a file's first bytes isJpeg2000 looks at. */
export const JPEG2000_SIGNATURE_BYTES = JP2_SIGNATURE.length;

/** Whether a file's first bytes are JPEG 2000's: a bare codestream or a JP2 box container. */
export function isJpeg2000(start: Buffer): boolean {
  return start.subarray(0, 4).equals(J2K_CODESTREAM) || start.subarray(0, JP2_SIGNATURE.length).equals(JP2_SIGNATURE);
}

/** A header spread over more than this is refused: nothing legitimate needs it, and we read it whole. */
const MAX_HEADER_BYTES = 16 * 2 ** 20;

/**
 * info.json for a JPEG 2000 image from its header alone (SIZ, COD): the size and the
 * resolution levels, read by range, usually in one read of the first 64 KiB. Nothing is decoded.
 */
export async function readJp2Metadata(reader: RangeReader, maxPixels: number): Promise<ImageMetadata & { jp2: Jp2Header }> {
  let length = JP2_HEADER_PREFIX_BYTES;
  for (;;) {
    const read = readJp2Header(await head(reader, length), { maxPixels, fileSize: reader.size });
    if ('header' in read) return { width: read.header.width, height: read.header.height, autoOrient: false, levels: jp2Levels(read.header), jp2: read.header };
    if (read.needBytes <= length || read.needBytes > MAX_HEADER_BYTES) throw undecodableSource('the stored JPEG 2000 file has a header too large to read');
    length = read.needBytes;
  }
}

/** The resolutions a JPEG 2000 codestream holds: every level OpenJPEG can reduce to. */
function jp2Levels(header: Jp2Header): StoredLevels {
  const level = (reduce: number): Level => ({ ...levelSize(header, reduce), page: reduce, tiles: undefined });
  const first = level(0);
  return {
    first,
    several: header.levels > 0,
    at: async (index) => (index === 0 ? first : index <= header.levels ? level(index) : undefined),
  };
}
