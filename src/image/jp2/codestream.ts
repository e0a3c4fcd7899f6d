import { sourceTooLarge, undecodableSource } from '../../errors.js';
import type { RangeReader } from '../../source/range-reader.js';
import { checkTileCount, checkTileStructures, type ComponentCoding } from './setup-cost.js';

/**
 * Reads what info.json and the tile planner need from a JPEG 2000 file's first bytes, in pure
 * TypeScript and without decoding: the JP2 boxes (signature, file type, header, codestream) or a
 * raw J2K codestream, then the codestream's main header: SIZ (image and tile geometry,
 * components) and COD/COC (resolution levels, layers, progression). ISO/IEC 15444-1, annexes A
 * and I.
 *
 * Every length and count in the file is checked before it is used and nothing is allocated by
 * what the file claims, so a corrupt, truncated or hostile header costs a few microseconds and
 * ends in a typed 4xx (422 undecodable, 413 too large), never another exception. Headers that
 * would make OpenJPEG itself allocate too much are refused too (setup-cost.ts).
 */

export type Progression = 'LRCP' | 'RLCP' | 'RPCL' | 'PCRL' | 'CPRL';

export interface Jp2Component {
  /** Bits per sample (1–31 here; the standard allows 38, OpenJPEG decodes 31). */
  precision: number;
  signed: boolean;
  /** Sample spacing on the reference grid (XRsiz, YRsiz): 2 for chroma subsampled by half. */
  dx: number;
  dy: number;
  /** How the main header says it is coded (COD, or its own COC). */
  coding: ComponentCoding;
}

export interface Jp2Header {
  /** A JP2 file (boxes around the codestream) or a raw J2K codestream. */
  container: 'jp2' | 'j2k';
  /** Full-resolution size in pixels. */
  width: number;
  height: number;
  /** The image's origin on the reference grid (XOsiz, YOsiz), almost always 0. */
  x0: number;
  y0: number;
  /** Tile grid: tile size and origin on the reference grid, and the tile count each way. */
  tile: { width: number; height: number; x0: number; y0: number; across: number; down: number };
  components: Jp2Component[];
  /** Wavelet decomposition levels every component has: a decode may reduce by 0 to this many. */
  levels: number;
  /** Quality layers. */
  layers: number;
  progression: Progression;
  /** Where the codestream (its SOC marker) starts in the file. */
  codestreamOffset: number;
  /**
   * The JP2 header maps or reorders components (a palette, component mapping or channel
   * definitions: pclr, cmap, cdef). OpenJPEG applies those once per codec and then forgets them,
   * so such an image is never decoded twice with one codec.
   */
  remapsComponents: boolean;
  /** Bytes of the file read to get here: the boxes before the codestream and its main header. */
  headerLength: number;
}

/** The header, or how long a prefix of the file the header needs (more than was given). */
export type Jp2HeaderRead = { header: Jp2Header } | { needBytes: number };

/** A first read that holds the boxes and main header of nearly every file in one go. */
export const JP2_HEADER_PREFIX_BYTES = 64 * 1024;

/** Beyond this the header is not worth reading (a real one is a few kilobytes, ICC included). */
const MAX_HEADER_BYTES = 16 * 1024 * 1024;
/** The standard's limits: components (Csiz) and tiles (Isot is 16 bits). */
const MAX_COMPONENTS_IN_STANDARD = 16_384;
const MAX_TILES = 65_535;
/** Real files have a handful of boxes and main-header segments; a flood of tiny ones is hostile. */
const MAX_BOXES = 1024;
const MAX_SEGMENTS = 8192;
/** Components the decoder turns into pixels: grey, grey + alpha, RGB, RGBA. */
const MAX_COMPONENTS = 4;
/** OpenJPEG's reference-grid coordinates are signed 32-bit. */
const MAX_COORDINATE = 0x7fff_ffff;
const PROGRESSIONS: readonly Progression[] = ['LRCP', 'RLCP', 'RPCL', 'PCRL', 'CPRL'];

const SOC = 0xff4f;
const SIZ = 0xff51;
const COD = 0xff52;
const COC = 0xff53;
const SOT = 0xff90;
const SOD = 0xff93;
/** Tile-parts walked when checking their headers; beyond, a file is flooding us. */
const MAX_TILE_PARTS = 131_072;
/** A first read of a tile-part: its SOT and, nearly always, the rest of its header. */
const TILE_PART_READ_BYTES = 4096;
const JP2_SIGNATURE = Buffer.from([0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a]);

/** Thrown inside this module only: the prefix ends before byte `needBytes`. */
class NeedMore {
  constructor(readonly needBytes: number) {}
}

const broken = (what: string) => undecodableSource(`the stored JPEG 2000 file is damaged or unsupported: ${what}`);

/** Bounds-checked big-endian reads over the prefix of a file of known size. */
class Bytes {
  constructor(
    private readonly prefix: Buffer,
    private readonly fileSize: number,
  ) {}

  /** Makes sure bytes up to `end` (exclusive) are in hand. */
  need(end: number): void {
    if (end <= this.prefix.length) return;
    if (end > this.fileSize) throw broken('it ends inside its header');
    if (end > MAX_HEADER_BYTES) throw broken('its header is implausibly large');
    throw new NeedMore(end);
  }

  u8(at: number): number {
    this.need(at + 1);
    return this.prefix.readUInt8(at);
  }

  u16(at: number): number {
    this.need(at + 2);
    return this.prefix.readUInt16BE(at);
  }

  u32(at: number): number {
    this.need(at + 4);
    return this.prefix.readUInt32BE(at);
  }

  u64(at: number): number {
    this.need(at + 8);
    const value = this.prefix.readBigUInt64BE(at);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw broken('a box length overflows');
    return Number(value);
  }

  type(at: number): string {
    this.need(at + 4);
    return this.prefix.toString('latin1', at, at + 4);
  }

  matches(at: number, expected: Buffer): boolean {
    this.need(at + expected.length);
    return this.prefix.subarray(at, at + expected.length).equals(expected);
  }
}

/**
 * Reads the header from the first bytes of a file of `fileSize` bytes. When `prefix` stops short
 * of what the header needs, answers `{ needBytes }` (a longer prefix to read and call again
 * with); `JP2_HEADER_PREFIX_BYTES` is a good first read. Throws only IiifErrors: 422 for a file
 * that is not a usable JPEG 2000 image, 413 when it has more than `maxPixels` pixels.
 */
export function readJp2Header(prefix: Buffer, limits: { maxPixels: number; fileSize: number }): Jp2HeaderRead {
  const bytes = new Bytes(prefix, Math.min(limits.fileSize, Number.MAX_SAFE_INTEGER));
  try {
    const boxes = bytes.matches(0, JP2_SIGNATURE) ? codestreamBox(bytes, limits.fileSize) : undefined;
    return { header: mainHeader(bytes, boxes?.codestream ?? 0, boxes ? 'jp2' : 'j2k', boxes?.remapsComponents ?? false, limits.maxPixels) };
  } catch (error) {
    if (error instanceof NeedMore) return { needBytes: error.needBytes };
    throw error;
  }
}

/** The header of a whole file in memory. */
export function jp2Header(file: Buffer, maxPixels: number): Jp2Header {
  const read = readJp2Header(file, { maxPixels, fileSize: file.length });
  // With the whole file in hand a longer prefix cannot exist: Bytes.need throws instead.
  if (!('header' in read)) throw broken('it ends inside its header');
  return read.header;
}

/** The image's size after discarding `reduce` resolution levels, as the decoder produces it. */
export function levelSize(header: Jp2Header, reduce: number): { width: number; height: number } {
  const scale = 2 ** reduce;
  const side = (origin: number, length: number) => Math.ceil((origin + length) / scale) - Math.ceil(origin / scale);
  return { width: side(header.x0, header.width), height: side(header.y0, header.height) };
}

/** The boxes of a JP2 header that change which decoded component is which channel. */
const REMAPPING_BOXES = new Set(['pclr', 'cmap', 'cdef']);

/**
 * Walks a JP2 file's top-level boxes (I.4): the signature, the file type, the header (whose
 * first box must be the image header; its boxes say whether components are remapped), then the
 * contiguous codestream, whose offset it returns.
 */
function codestreamBox(bytes: Bytes, fileSize: number): { codestream: number; remapsComponents: boolean } {
  let at = JP2_SIGNATURE.length;
  let remapsComponents: boolean | undefined;
  let boxes = 0;
  for (let index = 1; index <= MAX_BOXES; index += 1) {
    const box = boxAt(bytes, at, fileSize);
    if (index === 1 && box.type !== 'ftyp') throw broken('the file type box does not follow the signature');
    if (box.type === 'jp2h') {
      if (bytes.type(box.body + 4) !== 'ihdr') throw broken('the JP2 header does not start with an image header');
      remapsComponents = false;
      for (let child = box.body; child < box.end; boxes += 1) {
        if (boxes === MAX_BOXES) throw broken('its JP2 header has too many boxes');
        const inner = boxAt(bytes, child, box.end);
        if (REMAPPING_BOXES.has(inner.type)) remapsComponents = true;
        child = inner.end;
      }
    }
    if (box.type === 'jp2c') {
      if (remapsComponents === undefined) throw broken('the codestream comes before the JP2 header');
      return { codestream: box.body, remapsComponents };
    }
    if (box.end >= fileSize) throw broken('the file has no codestream');
    at = box.end;
  }
  throw broken('it has too many boxes before its codestream');
}

/** One box (I.4): its type, where its contents start and where it ends. */
function boxAt(bytes: Bytes, at: number, fileSize: number): { type: string; body: number; end: number } {
  const length = bytes.u32(at);
  const type = bytes.type(at + 4);
  let body = at + 8;
  let size = length;
  if (length === 1) {
    size = bytes.u64(at + 8);
    body = at + 16;
  } else if (length === 0) {
    size = fileSize - at; // the last box runs to the end of the file
  }
  if (size < body - at) throw broken(`the ${printable(type)} box has an impossible length`);
  if (at + size > fileSize) throw broken(`the ${printable(type)} box runs past the end of the file`);
  return { type, body, end: at + size };
}

const printable = (type: string) => JSON.stringify(type.replace(/[^\x20-\x7e]/g, '?'));

/** SOC, then SIZ, then marker segments up to the first tile-part (SOT) (A.4-A.6). */
function mainHeader(bytes: Bytes, start: number, container: Jp2Header['container'], remapsComponents: boolean, maxPixels: number): Jp2Header {
  if (bytes.u16(start) !== SOC || bytes.u16(start + 2) !== SIZ) throw broken('the codestream does not start with SOC and SIZ');
  const size = imageAndTiles(bytes, start + 2, maxPixels);
  const { cod, coc, end } = codingSegments(bytes, start + 4 + bytes.u16(start + 4), SOT, size.components.length);
  if (!cod) throw broken('the main header has no coding style (COD)');
  const components = size.components.map((component, c) => ({ ...component, coding: coc.get(c) ?? cod.coding }));
  checkTileStructures(Math.min(size.tile.width, size.width), Math.min(size.tile.height, size.height), components);
  return {
    container,
    ...size,
    components,
    levels: Math.min(...components.map((component) => component.coding.levels)),
    layers: cod.layers,
    progression: cod.progression,
    codestreamOffset: start,
    remapsComponents,
    headerLength: end + 2,
  };
}

/**
 * Checks the coding styles that tile-part headers set for their own tile (they override the
 * main header's), which OpenJPEG meets only as it decodes: a tile made of tiny code-blocks is
 * refused like a main header that asks for them. Walks the chain of tile-parts by their lengths
 * (A.4.2), reading each one's header by range (one read for most: the file is never read
 * whole for this), and leaves damage further on to the decoder.
 */
export async function checkTileParts(reader: RangeReader, header: Jp2Header): Promise<void> {
  const { tile, components } = header;
  const fileSize = reader.size;
  let at = header.headerLength - 2;
  for (let part = 0; at + 12 <= fileSize; part++) {
    if (part === MAX_TILE_PARTS) throw broken('it has too many tile-parts');
    let chunk = await reader.read(at, Math.min(TILE_PART_READ_BYTES, fileSize - at));
    if (chunk.readUInt16BE(0) !== SOT) return;
    const index = chunk.readUInt16BE(4);
    const length = chunk.readUInt32BE(6);
    if (index >= tile.across * tile.down) return;
    // The tile-part's header, positions counted from its SOT, read further when it is longer.
    let segments: ReturnType<typeof codingSegments> | undefined;
    while (!segments) {
      try {
        segments = codingSegments(new Bytes(chunk, fileSize - at), 12, SOD, components.length);
      } catch (error) {
        if (!(error instanceof NeedMore)) throw error;
        chunk = await reader.read(at, error.needBytes);
      }
    }
    const { cod, coc } = segments;
    if (cod || coc.size > 0) {
      // Tile-part COC, then tile-part COD, then the main header's choice (A.6).
      checkTileStructures(
        tileSpan(tile.x0, tile.width, index % tile.across, header.x0, header.width),
        tileSpan(tile.y0, tile.height, Math.floor(index / tile.across), header.y0, header.height),
        components.map((component, c) => ({ ...component, coding: coc.get(c) ?? cod?.coding ?? component.coding })),
      );
    }
    if (length === 0) return; // the last tile-part runs to the end of the codestream
    at += length;
  }
}

/** How much of the image the k-th tile along one axis covers (B.3). */
function tileSpan(tileOrigin: number, tileSize: number, k: number, imageOrigin: number, imageSize: number): number {
  return Math.min(tileOrigin + (k + 1) * tileSize, imageOrigin + imageSize) - Math.max(tileOrigin + k * tileSize, imageOrigin);
}

/** A COD segment: the coding of every component, and the codestream's layers and progression. */
interface CodingDefault {
  coding: ComponentCoding;
  layers: number;
  progression: Progression;
}

/**
 * Reads the marker segments of a header (the main one, up to SOT, or a tile-part's, up to SOD),
 * keeping the coding styles they set: COD for all components, COC for one. Returns where the
 * `stop` marker is.
 */
function codingSegments(bytes: Bytes, at: number, stop: number, components: number): { cod?: CodingDefault; coc: Map<number, ComponentCoding>; end: number } {
  let cod: CodingDefault | undefined;
  const coc = new Map<number, ComponentCoding>();
  for (let segments = 0; bytes.u16(at) !== stop; segments += 1) {
    if (segments === MAX_SEGMENTS) throw broken('a header has too many segments');
    const marker = bytes.u16(at);
    if (marker >>> 8 !== 0xff || marker < 0xff30) throw broken('a header has a corrupt marker');
    const length = bytes.u16(at + 2);
    if (length < 2) throw broken('a header segment has an impossible length');
    bytes.need(at + 2 + length);
    if (marker === COD) cod = codingStyle(bytes, at + 2, length);
    if (marker === COC) coc.set(...componentCodingStyle(bytes, at + 2, length, components));
    at += 2 + length;
  }
  return { cod, coc, end: at };
}

type ImageAndTiles = Pick<Jp2Header, 'width' | 'height' | 'x0' | 'y0' | 'tile'> & { components: Array<Omit<Jp2Component, 'coding'>> };

/** SIZ (A.5.1): reference grid, image offset, tiling and components, each checked. */
function imageAndTiles(bytes: Bytes, at: number, maxPixels: number): ImageAndTiles {
  const length = bytes.u16(at + 2);
  const [xsiz, ysiz, x0, y0, tileWidth, tileHeight, tileX0, tileY0] = [6, 10, 14, 18, 22, 26, 30, 34].map((offset) => bytes.u32(at + offset)) as [
    number, number, number, number, number, number, number, number,
  ];
  const count = bytes.u16(at + 38);
  if (count === 0) throw broken('it has no components');
  if (count > MAX_COMPONENTS_IN_STANDARD) throw broken(`it claims ${count} components`);
  if (count > MAX_COMPONENTS) throw broken(`it has ${count} components; 1 to ${MAX_COMPONENTS} are supported`);
  if (length !== 38 + 3 * count) throw broken('its SIZ segment length does not match its component count');
  if (xsiz <= x0 || ysiz <= y0) throw broken('the image has no pixels');
  if (xsiz > MAX_COORDINATE || ysiz > MAX_COORDINATE) throw broken('the image is too large for the decoder');
  const width = xsiz - x0;
  const height = ysiz - y0;
  if (width * height > maxPixels) {
    throw sourceTooLarge(`the stored image is ${width}×${height} pixels, more than this server decodes (${maxPixels})`);
  }
  if (tileWidth === 0 || tileHeight === 0) throw broken('its tiles have no size');
  if (tileX0 > x0 || tileY0 > y0 || tileX0 + tileWidth <= x0 || tileY0 + tileHeight <= y0) throw broken('its tile grid misses the image');
  const across = Math.ceil((xsiz - tileX0) / tileWidth);
  const down = Math.ceil((ysiz - tileY0) / tileHeight);
  if (across * down > MAX_TILES) throw broken(`it claims ${across * down} tiles`);
  checkTileCount(across * down, count);
  const components: ImageAndTiles['components'] = [];
  for (let c = 0; c < count; c += 1) {
    const ssiz = bytes.u8(at + 40 + 3 * c);
    const dx = bytes.u8(at + 41 + 3 * c);
    const dy = bytes.u8(at + 42 + 3 * c);
    const precision = (ssiz & 0x7f) + 1;
    if (precision > 31) throw broken(`a component has ${precision} bits per sample`);
    if (dx === 0 || dy === 0) throw broken('a component has no sample spacing');
    components.push({ precision, signed: (ssiz & 0x80) !== 0, dx, dy });
  }
  if (components[0]?.dx !== 1 || components[0].dy !== 1) throw broken('its first component is subsampled');
  return { width, height, x0, y0, tile: { width: tileWidth, height: tileHeight, x0: tileX0, y0: tileY0, across, down }, components };
}

/** COD (A.6.1): progression order, layers, and how every component is coded. */
function codingStyle(bytes: Bytes, at: number, length: number): CodingDefault {
  if (length < 12) throw broken('its COD segment is too short');
  const style = bytes.u8(at + 2);
  const progression = PROGRESSIONS[bytes.u8(at + 3)];
  const layers = bytes.u16(at + 4);
  if (!progression) throw broken('its progression order is unknown');
  if (layers === 0) throw broken('it has no quality layers');
  return { coding: componentCoding(bytes, at + 7, length - 7, (style & 1) !== 0), layers, progression };
}

/**
 * COC (A.6.2): one component's own coding, as [component, coding]. The component index is one
 * byte: it is two only beyond 256 components, which SIZ has refused already.
 */
function componentCodingStyle(bytes: Bytes, at: number, length: number, components: number): [number, ComponentCoding] {
  if (length < 9) throw broken('its COC segment is too short');
  const index = bytes.u8(at + 2);
  if (index >= components) throw broken('a COC segment names a component that does not exist');
  const style = bytes.u8(at + 3);
  return [index, componentCoding(bytes, at + 4, length - 4, (style & 1) !== 0)];
}

/**
 * SPcod/SPcoc (table A.15): decomposition levels, code-block size, transform, and the precinct
 * sizes when the style says they are given (otherwise 2^15, table A.21).
 */
function componentCoding(bytes: Bytes, at: number, length: number, precinctsGiven: boolean): ComponentCoding {
  const levels = bytes.u8(at);
  const blockWidth = bytes.u8(at + 1);
  const blockHeight = bytes.u8(at + 2);
  const transform = bytes.u8(at + 4);
  if (levels > 32) throw broken(`it claims ${levels} decomposition levels`);
  if (blockWidth > 8 || blockHeight > 8 || blockWidth + blockHeight > 8) throw broken('its code-blocks have an impossible size');
  if (transform > 1) throw broken('its wavelet transform is unknown');
  if (length < 5 + (precinctsGiven ? levels + 1 : 0)) throw broken('its coding style segment is too short for its precincts');
  const precincts = Array.from({ length: levels + 1 }, (_, resolution) => {
    if (!precinctsGiven) return { width: 2 ** 15, height: 2 ** 15 };
    const exponents = bytes.u8(at + 5 + resolution);
    const [x, y] = [exponents & 0x0f, exponents >>> 4];
    if (resolution > 0 && (x === 0 || y === 0)) throw broken('its precincts are smaller than a band allows');
    return { width: 2 ** x, height: 2 ** y };
  });
  return { levels, codeBlock: { width: 2 ** (blockWidth + 2), height: 2 ** (blockHeight + 2) }, precincts };
}
