import { ServerError } from '../errors.js';

/**
 * The one way format readers get at an image's bytes: by range. TIFF directories and stored
 * tiles, JPEG 2000 codestreams and the headers read for sniffing and bomb checks all go through
 * this, whether the image is a local file, an S3 object read through the block cache, or bytes
 * in memory.
 */
export interface RangeReader {
  /** The image's length in bytes. */
  readonly size: number;
  /**
   * Exactly `length` bytes from `offset`. A range outside [0, size) throws OutsideImage (the
   * caller's headers point past the end: a malformed or truncated file); trouble getting the
   * bytes (the store failing, the object changing) throws an IiifError with its status.
   */
  read(offset: number, length: number): Promise<Buffer>;
}

/** A read of bytes the image does not have. */
export class OutsideImage extends ServerError {
  constructor(message: string) {
    super('SOURCE_RANGE_OUTSIDE', message);
  }
}

/** Throws OutsideImage for a range that is not inside an image of `size` bytes. */
export function checkRange(size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new OutsideImage(`bytes ${offset}+${length} are outside the ${size}-byte image`);
  }
}

/** A range reader over bytes already in memory. */
export function bufferReader(bytes: Buffer): RangeReader {
  return {
    size: bytes.length,
    read: async (offset, length) => {
      checkRange(bytes.length, offset, length);
      return bytes.subarray(offset, offset + length);
    },
  };
}

/** The first bytes of an image (at most `length`), for sniffing its format. */
export function head(reader: RangeReader, length: number): Promise<Buffer> {
  return reader.read(0, Math.min(length, reader.size));
}
