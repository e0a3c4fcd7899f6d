import { readFile } from 'node:fs/promises';
import { sourceTooLarge, undecodableSource } from '../../errors.js';
import { decodeOffThread } from './off-thread.js';

export interface DecodedRaster {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
  /** 8 or 16 bits per sample. */
  depth: 8 | 16;
}

const J2K_CODESTREAM = Buffer.from([0xff, 0x4f, 0xff, 0x51]);
const JP2_SIGNATURE = Buffer.from([0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]);

/** How many of a file's first bytes isJpeg2000 looks at. */
export const JPEG2000_SIGNATURE_BYTES = JP2_SIGNATURE.length;

/** Whether a file's first bytes are JPEG 2000's: a bare codestream or a JP2 box container. */
export function isJpeg2000(start: Buffer): boolean {
  return start.subarray(0, 4).equals(J2K_CODESTREAM) || start.subarray(0, JP2_SIGNATURE.length).equals(JP2_SIGNATURE);
}

/** The codestream inside a JP2 file (its `jp2c` box), or the bytes themselves for a bare one. */
export function codestreamOf(bytes: Buffer): Buffer {
  if (bytes.subarray(0, 4).equals(J2K_CODESTREAM)) return bytes;
  let at = 0;
  while (at + 8 <= bytes.length) {
    let length = bytes.readUInt32BE(at);
    const type = bytes.toString('latin1', at + 4, at + 8);
    let header = 8;
    if (length === 1) {
      length = Number(bytes.readBigUInt64BE(at + 8));
      header = 16;
    } else if (length === 0) {
      length = bytes.length - at;
    }
    if (length < header || at + length > bytes.length) break;
    if (type === 'jp2c') return bytes.subarray(at + header, at + length);
    at += length;
  }
  throw undecodableSource('the stored JPEG 2000 file has no codestream');
}

export interface Jpeg2000Header {
  width: number;
  height: number;
  components: number;
  bitsPerSample: number;
  signed: boolean;
}

/**
 * Reads the SIZ segment that must follow the codestream's start (ISO 15444-1 A.5.1): image
 * size, components and sample depth — enough to refuse a decompression bomb undecoded.
 */
export function readJpeg2000Header(stream: Buffer): Jpeg2000Header {
  if (stream.length < 42 || !stream.subarray(0, 4).equals(J2K_CODESTREAM)) {
    throw undecodableSource('the stored JPEG 2000 header cannot be read');
  }
  const width = stream.readUInt32BE(8) - stream.readUInt32BE(16);
  const height = stream.readUInt32BE(12) - stream.readUInt32BE(20);
  const components = stream.readUInt16BE(40);
  const depth = stream[42] ?? 0;
  return { width, height, components, bitsPerSample: (depth & 0x7f) + 1, signed: (depth & 0x80) !== 0 };
}

/**
 * Decodes a whole JPEG 2000 image (sharp's libvips has no OpenJPEG) so it can be converted to
 * a pyramid once, on a worker thread (see off-thread.ts). The header is read first: a file
 * declaring more than `maxInputPixels` is refused before any pixel is decoded.
 */
export async function decodeJpeg2000(input: string | Buffer, maxInputPixels: number): Promise<DecodedRaster> {
  const stream = codestreamOf(typeof input === 'string' ? await readFile(input) : input);
  const header = readJpeg2000Header(stream);
  if (header.width <= 0 || header.height <= 0) throw undecodableSource('the stored JPEG 2000 image has no dimensions');
  if (header.width * header.height > maxInputPixels) {
    throw sourceTooLarge(`the stored image is ${header.width}×${header.height} pixels, more than this server decodes (${maxInputPixels})`);
  }
  if (header.components < 1 || header.components > 4 || header.signed || header.bitsPerSample > 16) {
    throw undecodableSource(`unsupported JPEG 2000 layout (${header.components} components, ${header.bitsPerSample} bits)`);
  }
  const { info, pixels } = await decodeOffThread(stream).catch(() => {
    throw undecodableSource('the stored JPEG 2000 image cannot be decoded');
  });
  if (pixels.length !== info.width * info.height * info.componentCount * (info.bitsPerSample > 8 ? 2 : 1)) {
    throw undecodableSource('the stored JPEG 2000 image decoded to an unexpected size');
  }
  return {
    data: Buffer.from(pixels.buffer, pixels.byteOffset, pixels.length),
    width: info.width,
    height: info.height,
    channels: info.componentCount as DecodedRaster['channels'],
    depth: info.bitsPerSample > 8 ? 16 : 8,
  };
}
