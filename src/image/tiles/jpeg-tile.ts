import { undecodableSource } from '../../errors.js';
import type { TiffPage } from './tiff-layout.js';

/**
 * Turns a JPEG-compressed TIFF tile into a standalone JPEG that any browser decodes to the
 * pixels libtiff gives for it, without decoding it: the page's shared tables (JPEGTables) are
 * joined in, and the colour markers are made to say what the TIFF tags say.
 *
 * Why markers matter: libtiff decodes a tile by its Photometric tag alone. RGB tiles come out
 * as stored (no colour transform); YCbCr tiles are converted to RGB. A JPEG decoder on its own
 * guesses from markers instead: a JFIF marker means YCbCr, an Adobe marker's transform flag
 * says which, and without either it guesses from the component ids (1,2,3 → YCbCr, 'R','G','B'
 * → RGB in libjpeg-turbo, YCbCr in decoders that do not look). libvips 8.14, ImageMagick and
 * tiffcp write RGB tiles with no marker at all, so every one of them needs an Adobe marker with
 * transform 0 to decode right everywhere; libvips 8.17 already writes one.
 */

/** How libtiff turns a page's JPEG tiles into pixels, for the pages whose tiles can stand alone. */
type Colour = 'rgb' | 'ycbcr' | 'grey';

const JPEG_COMPRESSION = 7;
const PHOTOMETRIC: Record<number, Colour> = { 1: 'grey', 2: 'rgb', 6: 'ycbcr' };

/**
 * Whether the page's tiles can be sent as standalone JPEGs: 8-bit unsigned JPEG tiles, one
 * plane, RGB or YCbCr in three channels or grey (black is zero) in one, nothing extra (alpha).
 * Anything else is decoded through libtiff, never guessed at.
 */
export function jpegColour(page: TiffPage): Colour | undefined {
  if (page.compression !== JPEG_COMPRESSION || page.bitsPerSample !== 8 || page.sampleFormat !== 1) return undefined;
  if (page.planarConfig !== 1 || page.extraSamples !== 0) return undefined;
  const colour = PHOTOMETRIC[page.photometric];
  return colour && page.samplesPerPixel === (colour === 'grey' ? 1 : 3) ? colour : undefined;
}

const SOI = 0xd8;
const EOI = 0xd9;
const SOS = 0xda;
const DQT = 0xdb;
const APP0 = 0xe0;
const APP15 = 0xef;
const COM = 0xfe;
/** Arithmetic coding conditioning: only with arithmetic frames, which browsers do not decode. */
const DAC = 0xcc;
/** Frame headers a browser decodes: baseline, extended sequential and progressive Huffman. */
const DECODABLE_FRAMES = new Set([0xc0, 0xc1, 0xc2]);
/** Marker segments allowed before the scan besides those: tables, restart interval, comments, APPn. */
const TABLES = new Set([0xc4, DQT, 0xdd]);

/** Adobe APP14, version 100, no flags, then the transform: 0 = stored as RGB, 1 = YCbCr. */
const adobe = (transform: number) => Buffer.from([0xff, 0xee, 0, 14, 0x41, 0x64, 0x6f, 0x62, 0x65, 0, 100, 0, 0, 0, 0, transform]);
const ADOBE = { rgb: adobe(0), ycbcr: adobe(1) };

/** A stream's marker segments before its scan, and what the frame header says. */
interface Segments {
  /** [start, end) byte ranges to keep: tables and frame header, without SOI, APPn and comments. */
  kept: Array<[number, number]>;
  /** Where the scan header starts (after the frame), or -1 in a tables-only stream. */
  scan: number;
  frame: { width: number; height: number; precision: number; ids: number[] } | undefined;
  /** A frame type no browser decodes (lossless, hierarchical, arithmetic), though libjpeg may. */
  undecodable: boolean;
  quantisation: boolean;
}

/**
 * The standalone JPEG for a stored tile, or undefined when its page or its coding is one no
 * browser decodes the way libtiff does (see jpegColour; lossless, hierarchical or arithmetic
 * coding): the caller then decodes through libtiff. A tile that is not a whole JPEG of the
 * tile's size and channels — its tags lie about where it is, how long or how large — is refused
 * with 422, as libtiff would fail on it too (or, worse, decode what is there and fill the rest).
 */
export function standaloneJpeg(stored: Buffer, page: TiffPage): Buffer | undefined {
  const colour = jpegColour(page);
  if (!colour) return undefined;
  const tile = throughEoi(stored);
  const tables = page.jpegTables && segments(page.jpegTables, false);
  const own = tile && segments(tile, true);
  const frame = own?.frame;
  if (!tile || (page.jpegTables && !tables) || !own || !frame || !(own.quantisation || tables?.quantisation)) throw corrupt();
  if (own.undecodable || frame.precision !== 8) return undefined;
  if (frame.width !== page.tileWidth || frame.height !== page.tileHeight || frame.ids.length !== page.samplesPerPixel) throw corrupt();
  const marker = colour === 'rgb' || (colour === 'ycbcr' && !isJfifIds(frame.ids)) ? ADOBE[colour] : undefined;
  const parts: Buffer[] = [tile.subarray(0, 2)];
  if (marker) parts.push(marker);
  for (const [start, end] of tables?.kept ?? []) parts.push(page.jpegTables!.subarray(start, end));
  for (const [start, end] of own.kept) parts.push(tile.subarray(start, end));
  parts.push(tile.subarray(own.scan));
  return Buffer.concat(parts);
}

const corrupt = () => undecodableSource('the stored image is corrupt: a tile is not the JPEG its tags describe');

/**
 * How far back from the end of a tile its EOI may lie: writers may pad tiles to an even length.
 * Entropy-coded data never holds the bytes FF D9 (an FF there is always followed by 00 or a
 * restart marker), so the last FF D9 is the end of the image.
 */
const PADDING = 16;

/** The tile up to its end-of-image marker; undefined when it has none (a truncated tile). */
function throughEoi(tile: Buffer): Buffer | undefined {
  for (let at = tile.length - 2; at >= Math.max(0, tile.length - 2 - PADDING); at--) {
    if (tile[at] === 0xff && tile[at + 1] === EOI) return tile.subarray(0, at + 2);
  }
  return undefined;
}

/**
 * Without JFIF or Adobe markers, component ids 1, 2, 3 are what every decoder reads as YCbCr
 * (libtiff writes them); others are guessed at, so those tiles get an Adobe marker too.
 */
const isJfifIds = (ids: number[]): boolean => ids[0] === 1 && ids[1] === 2 && ids[2] === 3;

/**
 * Walks the marker segments of a JPEG stream up to its scan (`image`) or its end (a tables-only
 * stream). Undefined for a broken stream: no SOI, a marker out of place, a length past the end.
 */
function segments(jpeg: Buffer, image: boolean): Segments | undefined {
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== SOI) return undefined;
  const found: Segments = { kept: [], scan: -1, frame: undefined, undecodable: false, quantisation: false };
  let at = 2;
  while (at + 2 <= jpeg.length) {
    if (jpeg[at] !== 0xff) return undefined;
    const marker = jpeg[at + 1]!;
    if (marker === 0xff) {
      at++; // fill byte
      continue;
    }
    if (marker === EOI) return image ? undefined : found;
    if (at + 4 > jpeg.length) return undefined;
    const end = at + 2 + jpeg.readUInt16BE(at + 2);
    if (end > jpeg.length || end < at + 4) return undefined;
    if (marker === SOS) {
      if (!image || !found.frame) return undefined;
      found.scan = at;
      return found;
    }
    if (isFrame(marker)) {
      if (!image || found.frame) return undefined;
      found.frame = readFrame(jpeg, at + 4, end);
      if (!found.frame) return undefined;
      found.undecodable = !DECODABLE_FRAMES.has(marker);
      found.kept.push([at, end]);
    } else if (TABLES.has(marker)) {
      found.quantisation ||= marker === DQT;
      found.kept.push([at, end]);
    } else if (!((marker >= APP0 && marker <= APP15) || marker === COM || marker === DAC)) {
      return undefined; // not a marker that belongs before a scan
    }
    at = end;
  }
  return undefined;
}

/** SOF0–SOF15 but for DHT (C4), JPG (C8) and DAC (CC), which share the range. */
const isFrame = (marker: number): boolean => marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== DAC;

function readFrame(jpeg: Buffer, body: number, end: number): Segments['frame'] {
  const count = jpeg[body + 5]!;
  if (body + 6 + count * 3 !== end) return undefined;
  const ids = Array.from({ length: count }, (_, i) => jpeg[body + 6 + i * 3]!);
  return { precision: jpeg[body]!, height: jpeg.readUInt16BE(body + 1), width: jpeg.readUInt16BE(body + 3), ids };
}
