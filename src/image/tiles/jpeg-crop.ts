import { ServerError } from '../../errors.js';

/**
 * Cuts the top-left corner out of a baseline JPEG without decoding a pixel: the entropy-coded
 * blocks are Huffman-decoded, the ones outside the corner are dropped, the kept ones are coded
 * again with the same tables (only their DC differences change, since DC is predicted from the
 * previous kept block) and the frame header gets the new size. A block row or column partly
 * outside the corner is kept whole; the decoder crops it, as JPEG does for any size that is not
 * a multiple of the MCU. No generation loss, and about a sixth of the CPU of a sharp decode,
 * crop and encode (measured on a 256×256 bench tile cut to 224 wide: 0.35 ms against 2.2 ms).
 *
 * This is how edge tiles are served: a pyramid's tiles are stored padded to the full tile size,
 * and a viewer asks for them cut to the image. Pure; anything this coder does not handle
 * (progressive, arithmetic, restart intervals, a DC difference with no code in the table)
 * returns undefined and the caller falls back to decoding.
 */
export function cropJpegCorner(jpeg: Uint8Array, width: number, height: number): Buffer | undefined {
  try {
    const layout = readLayout(jpeg);
    if (!layout || width < 1 || height < 1 || width > layout.width || height > layout.height) return undefined;
    return recode(jpeg, layout, width, height);
  } catch (error) {
    if (error instanceof Unsupported) return undefined;
    throw error;
  }
}

/** The stream is corrupt, or uses something this coder leaves to libjpeg. */
class Unsupported extends ServerError {
  constructor() {
    super('JPEG_CUT_UNSUPPORTED', 'the stream is corrupt or needs a full decoder');
  }
}

interface HuffmanTable {
  /** 9-bit prefix → symbol << 8 | code length, or 0 when the code is longer. */
  fast: Uint16Array;
  /** Per code length 1–16: the largest code of that length (−1 when none), its first code and value index. */
  maxCode: Int32Array;
  minCode: Int32Array;
  firstValue: Int32Array;
  values: Uint8Array;
  /** For coding: symbol → code and its length (0 when the symbol has no code). */
  code: Uint16Array;
  codeLength: Uint8Array;
}

interface ScanComponent {
  /** Blocks per MCU across and down (1×1 for a single-component scan). */
  h: number;
  v: number;
  dc: HuffmanTable;
  ac: HuffmanTable;
}

interface Layout {
  width: number;
  height: number;
  /** Offset of the frame header's height field (width follows). */
  sizeOffset: number;
  /** Offset of the first entropy-coded byte. */
  dataOffset: number;
  components: ScanComponent[];
  /** MCU size in pixels. */
  mcuWidth: number;
  mcuHeight: number;
}

const FAST_BITS = 9;

function readLayout(jpeg: Uint8Array): Layout | undefined {
  if (jpeg[0] !== 0xff || jpeg[1] !== 0xd8) return undefined;
  const tables = new Map<number, HuffmanTable>();
  let frame: { width: number; height: number; sizeOffset: number; components: Map<number, { h: number; v: number }> } | undefined;
  let offset = 2;
  while (offset + 4 <= jpeg.length) {
    if (jpeg[offset] !== 0xff) throw new Unsupported();
    const marker = jpeg[offset + 1]!;
    if (marker === 0xff) {
      offset++; // fill byte
      continue;
    }
    const length = (jpeg[offset + 2]! << 8) | jpeg[offset + 3]!;
    const body = offset + 4;
    const end = offset + 2 + length;
    if (length < 2 || end > jpeg.length) throw new Unsupported();
    if (marker === 0xc4) readHuffmanTables(jpeg, body, end, tables);
    else if (marker === 0xc0 || marker === 0xc1) frame = readFrame(jpeg, body, end);
    else if (marker >= 0xc2 && marker <= 0xcf) return undefined; // progressive, lossless, hierarchical, arithmetic
    else if (marker === 0xdd && ((jpeg[body]! << 8) | jpeg[body + 1]!) !== 0) return undefined; // restart intervals
    else if (marker === 0xda) return frame && readScan(jpeg, body, end, frame, tables);
    else if (marker === 0xd9) return undefined;
    offset = end;
  }
  return undefined;
}

function readFrame(jpeg: Uint8Array, body: number, end: number) {
  const precision = jpeg[body]!;
  const height = (jpeg[body + 1]! << 8) | jpeg[body + 2]!;
  const width = (jpeg[body + 3]! << 8) | jpeg[body + 4]!;
  const count = jpeg[body + 5]!;
  if (precision !== 8 || body + 6 + count * 3 > end || count < 1 || count > 4 || height === 0) throw new Unsupported();
  const components = new Map<number, { h: number; v: number }>();
  for (let i = 0; i < count; i++) {
    const at = body + 6 + i * 3;
    const h = jpeg[at + 1]! >> 4;
    const v = jpeg[at + 1]! & 15;
    if (h < 1 || h > 4 || v < 1 || v > 4) throw new Unsupported();
    components.set(jpeg[at]!, { h, v });
  }
  return { width, height, sizeOffset: body + 1, components };
}

function readScan(
  jpeg: Uint8Array,
  body: number,
  end: number,
  frame: NonNullable<ReturnType<typeof readFrame>>,
  tables: Map<number, HuffmanTable>,
): Layout | undefined {
  const count = jpeg[body]!;
  // One interleaved scan of every component, sequential (Ss 0, Se 63, no approximation).
  if (count !== frame.components.size || body + 1 + count * 2 + 3 !== end) return undefined;
  const spectral = body + 1 + count * 2;
  if (jpeg[spectral] !== 0 || jpeg[spectral + 1] !== 63 || jpeg[spectral + 2] !== 0) return undefined;
  const components: ScanComponent[] = [];
  let hMax = 1;
  let vMax = 1;
  for (const { h, v } of frame.components.values()) {
    hMax = Math.max(hMax, h);
    vMax = Math.max(vMax, v);
  }
  for (let i = 0; i < count; i++) {
    const sampling = frame.components.get(jpeg[body + 1 + i * 2]!);
    const dc = tables.get(jpeg[body + 2 + i * 2]! >> 4);
    const ac = tables.get(0x10 | (jpeg[body + 2 + i * 2]! & 15));
    if (!sampling || !dc || !ac) throw new Unsupported();
    // A single-component scan is not interleaved: its MCU is one block whatever the sampling.
    components.push(count === 1 ? { h: 1, v: 1, dc, ac } : { h: sampling.h, v: sampling.v, dc, ac });
  }
  const single = count === 1;
  return {
    width: frame.width,
    height: frame.height,
    sizeOffset: frame.sizeOffset,
    dataOffset: end,
    components,
    mcuWidth: single ? 8 : 8 * hMax,
    mcuHeight: single ? 8 : 8 * vMax,
  };
}

/** Reads every table of a DHT segment; the key is class << 4 | id (DC 0x0n, AC 0x1n). */
function readHuffmanTables(jpeg: Uint8Array, start: number, end: number, tables: Map<number, HuffmanTable>): void {
  let at = start;
  while (at < end) {
    const key = jpeg[at]!;
    if (key >> 4 > 1 || (key & 15) > 3 || at + 17 > end) throw new Unsupported();
    const counts = jpeg.subarray(at + 1, at + 17);
    const total = counts.reduce((sum, n) => sum + n, 0);
    if (at + 17 + total > end) throw new Unsupported();
    tables.set(key, buildTable(counts, jpeg.slice(at + 17, at + 17 + total)));
    at += 17 + total;
  }
}

/** Canonical Huffman codes from the code-length counts (JPEG Annex C). */
function buildTable(counts: Uint8Array, values: Uint8Array): HuffmanTable {
  const table: HuffmanTable = {
    fast: new Uint16Array(1 << FAST_BITS),
    maxCode: new Int32Array(18).fill(-1),
    minCode: new Int32Array(17),
    firstValue: new Int32Array(17),
    values,
    code: new Uint16Array(256),
    codeLength: new Uint8Array(256),
  };
  let code = 0;
  let index = 0;
  for (let length = 1; length <= 16; length++) {
    const n = counts[length - 1]!;
    table.firstValue[length] = index;
    table.minCode[length] = code;
    for (let i = 0; i < n; i++, index++, code++) {
      const symbol = values[index]!;
      table.code[symbol] = code;
      table.codeLength[symbol] = length;
      if (length <= FAST_BITS) {
        const shift = FAST_BITS - length;
        table.fast.fill((symbol << 8) | length, code << shift, (code + 1) << shift);
      }
    }
    if (n > 0) table.maxCode[length] = code - 1;
    if (code > 1 << length) throw new Unsupported(); // more codes than bits allow
    code <<= 1;
  }
  table.maxCode[17] = 0x7fffffff; // sentinel: ends the slow search
  return table;
}

/** Reads the entropy-coded segment bit by bit, undoing the 0xFF 0x00 byte stuffing. */
class BitReader {
  private bits = 0;
  private count = 0;
  /** Zero bytes fed past the end of the data; reading them means the stream is truncated. */
  private padding = 0;

  constructor(
    private readonly data: Uint8Array,
    private offset: number,
  ) {}

  /** Makes at least 16 bits available (the accumulator stays under 2^25). */
  private fill(): void {
    while (this.count <= 16) {
      let byte = 0;
      if (this.offset < this.data.length && this.data[this.offset] !== 0xff) {
        byte = this.data[this.offset++]!;
      } else if (this.offset + 1 < this.data.length && this.data[this.offset] === 0xff && this.data[this.offset + 1] === 0) {
        byte = 0xff;
        this.offset += 2;
      } else {
        this.padding++; // a marker or the end: the data is over
      }
      this.bits = ((this.bits << 8) | byte) & 0xffffff;
      this.count += 8;
    }
  }

  peek16(): number {
    if (this.count < 16) this.fill();
    return (this.bits >>> (this.count - 16)) & 0xffff;
  }

  skip(length: number): void {
    this.count -= length;
    if (this.padding * 8 > this.count) throw new Unsupported(); // consumed bits that are not there
  }

  read(length: number): number {
    if (length === 0) return 0;
    const value = this.peek16() >>> (16 - length);
    this.skip(length);
    return value;
  }

  /**
   * A symbol whose low four bits count the extra bits that follow it (every DC and AC symbol
   * is one), and those bits: symbol << 16 | bits. Both come from one look at the stream when
   * they fit in it, as most do.
   */
  decodeWithBits(table: HuffmanTable): number {
    const peek = this.peek16();
    const fast = table.fast[peek >>> (16 - FAST_BITS)]!;
    const length = fast & 0xff;
    const size = (fast >> 8) & 15;
    if (fast !== 0 && length + size <= 16) {
      this.skip(length + size);
      return ((fast >> 8) << 16) | ((peek >>> (16 - length - size)) & ((1 << size) - 1));
    }
    const symbol = this.decode(table);
    return (symbol << 16) | this.read(symbol & 15);
  }

  decode(table: HuffmanTable): number {
    const peek = this.peek16();
    const fast = table.fast[peek >>> (16 - FAST_BITS)]!;
    if (fast !== 0) {
      this.skip(fast & 0xff);
      return fast >> 8;
    }
    let length = FAST_BITS + 1;
    let code = peek >>> (16 - length);
    while (code > table.maxCode[length]!) code = peek >>> (16 - ++length);
    if (length > 16) throw new Unsupported();
    this.skip(length);
    return table.values[table.firstValue[length]! + code - table.minCode[length]!]!;
  }
}

/** Writes entropy-coded bits, stuffing a 0x00 after every 0xFF byte. */
class BitWriter {
  private bits = 0;
  private count = 0;
  length: number;

  constructor(
    public buffer: Buffer,
    start: number,
  ) {
    this.length = start;
  }

  /** `length` ≤ 24: with at most 7 bits pending, the accumulator stays within 31 bits. */
  write(value: number, length: number): void {
    this.bits = (this.bits << length) | value;
    this.count += length;
    while (this.count >= 8) {
      this.count -= 8;
      const byte = (this.bits >>> this.count) & 0xff;
      if (this.length + 2 > this.buffer.length) this.grow();
      this.buffer[this.length++] = byte;
      if (byte === 0xff) this.buffer[this.length++] = 0;
    }
    this.bits &= (1 << this.count) - 1;
  }

  /** Pads the last byte with 1 bits, as JPEG requires, and ends the image (EOI). */
  finish(): Buffer {
    if (this.count > 0) this.write((1 << (8 - this.count)) - 1, 8 - this.count);
    if (this.length + 2 > this.buffer.length) this.grow();
    this.buffer[this.length++] = 0xff;
    this.buffer[this.length++] = 0xd9;
    return this.buffer.subarray(0, this.length);
  }

  private grow(): void {
    const bigger = Buffer.allocUnsafe(this.buffer.length * 2);
    this.buffer.copy(bigger, 0, 0, this.length);
    this.buffer = bigger;
  }
}

function recode(jpeg: Uint8Array, layout: Layout, width: number, height: number): Buffer {
  const { components, mcuWidth, mcuHeight } = layout;
  const mcuColumns = Math.ceil(layout.width / mcuWidth);
  const keptColumns = Math.ceil(width / mcuWidth);
  const keptRows = Math.ceil(height / mcuHeight);
  const reader = new BitReader(jpeg, layout.dataOffset);
  const writer = new BitWriter(Buffer.allocUnsafe(jpeg.length + 1024), layout.dataOffset);
  writer.buffer.set(jpeg.subarray(0, layout.dataOffset));
  writer.buffer.writeUInt16BE(height, layout.sizeOffset);
  writer.buffer.writeUInt16BE(width, layout.sizeOffset + 2);
  // DC coefficients are coded as differences from the previous block of the same component:
  // one predictor follows the stored stream, the other the stream being written.
  const readDc = new Int32Array(components.length);
  const writtenDc = new Int32Array(components.length);
  for (let row = 0; row < keptRows; row++) {
    for (let column = 0; column < mcuColumns; column++) {
      const keep = column < keptColumns;
      for (let c = 0; c < components.length; c++) {
        const component = components[c]!;
        for (let block = component.h * component.v; block > 0; block--) {
          const coded = reader.decodeWithBits(component.dc);
          const category = coded >> 16;
          if (category > 11) throw new Unsupported();
          const dc = readDc[c]! + extend(coded & 0xffff, category);
          readDc[c] = dc;
          if (keep) {
            writeDc(writer, component.dc, dc - writtenDc[c]!);
            writtenDc[c] = dc;
          }
          copyAc(reader, keep ? writer : undefined, component.ac);
        }
      }
    }
  }
  return writer.finish();
}

/** A category's extra bits as a signed value (JPEG F.2.2.1). */
function extend(bits: number, category: number): number {
  return category > 0 && bits < 1 << (category - 1) ? bits - (1 << category) + 1 : bits;
}

function writeDc(writer: BitWriter, table: HuffmanTable, difference: number): void {
  const category = difference === 0 ? 0 : 32 - Math.clz32(Math.abs(difference));
  const length = table.codeLength[category]!;
  if (length === 0) throw new Unsupported(); // an optimised table without this category
  writer.write(table.code[category]!, length);
  if (category > 0) writer.write(difference < 0 ? difference + (1 << category) - 1 : difference, category);
}

/** Passes one block's AC coefficients through unchanged (or skips them when `writer` is undefined). */
function copyAc(reader: BitReader, writer: BitWriter | undefined, table: HuffmanTable): void {
  for (let k = 1; k < 64; ) {
    const coded = reader.decodeWithBits(table);
    const symbol = coded >> 16;
    const size = symbol & 15;
    const bits = coded & 0xffff;
    if (writer) {
      const length = table.codeLength[symbol]!;
      // One write for code and extra bits while they fit the writer's 31-bit accumulator.
      if (length + size <= 24) writer.write((table.code[symbol]! << size) | bits, length + size);
      else {
        writer.write(table.code[symbol]!, length);
        writer.write(bits, size);
      }
    }
    if (size === 0 && symbol !== 0xf0) return; // end of block
    k += (symbol >> 4) + 1;
    if (k > 64) throw new Unsupported();
  }
}
