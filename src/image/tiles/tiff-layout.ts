import { IiifError, ServerError } from '../../errors.js';
import type { RangeReader } from '../../source/range-reader.js';

/** Where one page's tiles lie in a tiled TIFF, as far as stored-tile pass-through needs it. */
export interface TiffPage {
  width: number;
  height: number;
  tileWidth: number;
  tileHeight: number;
  /** 7 = JPEG ("new-style"). */
  compression: number;
  /** 6 = YCbCr, 1 = grey (min-is-black), 2 = RGB. */
  photometric: number;
  samplesPerPixel: number;
  /** Every sample's bit depth is this one; 0 when they differ. */
  bitsPerSample: number;
  /** 1 = unsigned integers (the default); 2 signed, 3 floating point. */
  sampleFormat: number;
  /** How many samples beyond the colour ones (alpha, masks) each pixel has. */
  extraSamples: number;
  planarConfig: number;
  tileOffsets: number[];
  tileByteCounts: number[];
  /** Quantisation and Huffman tables shared by every tile of the page (an abbreviated JPEG stream). */
  jpegTables: Buffer | undefined;
  /** TIFF orientation, 1 (rows top to bottom, columns left to right) unless stated. */
  orientation: number;
}

const TAG = {
  width: 256,
  height: 257,
  bitsPerSample: 258,
  compression: 259,
  photometric: 262,
  orientation: 274,
  samplesPerPixel: 277,
  planarConfig: 284,
  extraSamples: 338,
  sampleFormat: 339,
  tileWidth: 322,
  tileHeight: 323,
  tileOffsets: 324,
  tileByteCounts: 325,
  jpegTables: 347,
} as const;

const TYPE_SIZE: Record<number, number> = { 1: 1, 2: 1, 3: 2, 4: 4, 7: 1, 16: 8 };
const KNOWN_TAGS = new Set<number>(Object.values(TAG));
// A hostile file cannot make us read much: bounded pages and entries, and one budget of values
// for the whole FILE, not per page: pages may all point at the same huge arrays, and 63 pages
// sharing one 4-million-entry array would otherwise be read (and held) 63 times. Four million
// values cover every file within the input pixel limit, even with 16-pixel tiles.
const MAX_PAGES = 64;
const MAX_ENTRIES = 1024;
const MAX_FILE_VALUES = 4_000_000;

/**
 * The page structure of a classic (non-Big) TIFF: tile grids, tile offsets and JPEG tables,
 * read by range. Directories are read when first asked for: the first one at once, each later
 * one only when a request needs that page (a pyramid's directories lie far apart, one range
 * read each). Anything it does not fully understand ends the pages there — the caller then
 * simply renders through sharp — so a malformed file never makes it throw; trouble getting the
 * bytes (the store failing) does, and is not remembered, so the next request reads again.
 */
export class TiffLayout {
  /** Directories read so far (or being read), in chain order; undefined past the last understood one. */
  private readonly directories: Array<Promise<Directory | undefined>>;
  /** Offsets of the directories read, so a chain that loops back ends. */
  private readonly seen = new Set<number>();
  private tailRead = false;

  /** The first page, read when the layout was opened. */
  readonly first: TiffPage;
  /** Whether the first directory names another after it (known without reading that one). */
  readonly hasMorePages: boolean;

  private constructor(
    private readonly reader: Reader,
    offset: number,
    first: Directory,
  ) {
    this.first = first.page;
    this.hasMorePages = first.next !== 0;
    this.directories = [Promise.resolve(first)];
    this.seen.add(offset);
  }

  /** The layout of a TIFF whose first page is understood; undefined for anything else. */
  static async open(bytes: RangeReader): Promise<TiffLayout | undefined> {
    return understood(async () => {
      const reader = new Reader(bytes);
      const header = await reader.bytes(0, 8);
      const order = header.toString('latin1', 0, 2);
      if (order !== 'II' && order !== 'MM') return undefined;
      reader.littleEndian = order === 'II';
      if (reader.u16(header, 2) !== 42) return undefined;
      const offset = reader.u32(header, 4);
      const first = await reader.page(offset);
      return first.page ? new TiffLayout(reader, offset, { page: first.page, next: first.next }) : undefined;
    });
  }

  /** Page `index` (0 = the first), reading the directories before it as needed; undefined past the last understood one. */
  async page(index: number): Promise<TiffPage | undefined> {
    if (index < 0 || index >= MAX_PAGES) return undefined;
    while (this.directories.length <= index) {
      const position = this.directories.length;
      const reading = this.readAfter(this.directories[position - 1]!);
      this.directories.push(reading);
      // A failed read is forgotten (with whatever was chained on it), so the next request tries again.
      reading.catch(() => {
        if (this.directories[position] === reading) this.directories.length = position;
      });
    }
    return (await this.directories[index]!)?.page;
  }

  /** Reads the file's tail once, when the directory at `offset` lies in it (see TAIL_BYTES). */
  private async readTailFrom(offset: number): Promise<void> {
    if (this.tailRead || offset >= this.reader.size || this.reader.size - offset > TAIL_BYTES) return;
    await this.reader.bytes(offset, this.reader.size - offset);
    this.tailRead = true;
  }

  /** Every understood page, in order (walks the whole chain). */
  async all(): Promise<TiffPage[]> {
    const pages: TiffPage[] = [];
    for (let index = 0; ; index++) {
      const page = await this.page(index);
      if (!page) return pages;
      pages.push(page);
    }
  }

  private async readAfter(previous: Promise<Directory | undefined>): Promise<Directory | undefined> {
    const offset = (await previous)?.next;
    if (!offset || this.seen.has(offset)) return undefined;
    return understood(async () => {
      await this.readTailFrom(offset);
      const { page, next } = await this.reader.page(offset);
      this.seen.add(offset);
      return page && { page, next };
    });
  }
}

/**
 * Pyramid writers (libvips, libtiff) put each level's directory after its tiles, so the small
 * levels and their directories end up together at the end of the file. When a directory lies
 * within this many bytes of the end, the whole tail is read at once: from a remote store that
 * is one request instead of one per remaining directory (and the small levels' tiles, which a
 * viewer's first screen needs, come with it); the reads that follow find it cached.
 */
const TAIL_BYTES = 256 * 1024;

interface Directory {
  page: TiffPage;
  /** Offset of the next directory; 0 when this is the last. */
  next: number;
}

/** Every understood page of a TIFF (the whole directory chain), or undefined when the first is not understood. */
export async function readTiffLayout(bytes: RangeReader): Promise<TiffPage[] | undefined> {
  return (await TiffLayout.open(bytes))?.all();
}

/**
 * Runs a parse: what the parser does not understand (bad offsets, ranges past the end, odd
 * values) means undefined; the store failing to deliver bytes is an IiifError, passed on.
 */
async function understood<T>(parse: () => Promise<T | undefined>): Promise<T | undefined> {
  try {
    return await parse();
  } catch (error) {
    if (error instanceof IiifError) throw error;
    return undefined;
  }
}

/** The file declares more tag values than any image within the input limits needs. */
class OverBudget extends ServerError {
  constructor() {
    super('TIFF_OVER_BUDGET', 'the file declares more tag values than any image within the limits needs');
  }
}

class Reader {
  littleEndian = true;
  /** Tag values (array entries, bytes of JPEG tables) still allowed to be read from this file. */
  private valuesLeft = MAX_FILE_VALUES;

  constructor(private readonly file: RangeReader) {}

  get size(): number {
    return this.file.size;
  }

  bytes(offset: number, length: number): Promise<Buffer> {
    return this.file.read(offset, length);
  }

  u16(buffer: Buffer, at: number): number {
    return this.littleEndian ? buffer.readUInt16LE(at) : buffer.readUInt16BE(at);
  }

  u32(buffer: Buffer, at: number): number {
    return this.littleEndian ? buffer.readUInt32LE(at) : buffer.readUInt32BE(at);
  }

  async page(offset: number): Promise<{ page: TiffPage | undefined; next: number }> {
    const count = this.u16(await this.bytes(offset, 2), 0);
    if (count > MAX_ENTRIES) throw new RangeError('too many IFD entries');
    const table = await this.bytes(offset + 2, count * 12 + 4);
    const next = this.u32(table, count * 12);
    const values = new Map<number, number[]>();
    let jpegTables: Buffer | undefined;
    for (let i = 0; i < count; i++) {
      const entry = i * 12;
      const tag = this.u16(table, entry);
      const type = this.u16(table, entry + 2);
      const n = this.u32(table, entry + 4);
      if (!KNOWN_TAGS.has(tag)) continue;
      const width = TYPE_SIZE[type];
      if (!width) continue;
      if (n > this.valuesLeft) throw new OverBudget();
      this.valuesLeft -= n;
      const inline = width * n <= 4;
      const data = inline ? table.subarray(entry + 8, entry + 12) : await this.bytes(this.u32(table, entry + 8), width * n);
      if (tag === TAG.jpegTables) {
        jpegTables = Buffer.from(data.subarray(0, n));
        continue;
      }
      values.set(tag, this.numbers(data, type, n));
    }
    const one = (tag: number, fallback?: number) => values.get(tag)?.[0] ?? fallback;
    const width = one(TAG.width);
    const height = one(TAG.height);
    const tileWidth = one(TAG.tileWidth);
    const tileHeight = one(TAG.tileHeight);
    const tileOffsets = values.get(TAG.tileOffsets);
    const tileByteCounts = values.get(TAG.tileByteCounts);
    if (!width || !height || !tileWidth || !tileHeight || !tileOffsets || !tileByteCounts) {
      return { page: undefined, next };
    }
    const tiles = Math.ceil(width / tileWidth) * Math.ceil(height / tileHeight);
    const planarConfig = one(TAG.planarConfig, 1)!;
    if (planarConfig !== 1 || tileOffsets.length !== tiles || tileByteCounts.length !== tiles) {
      return { page: undefined, next };
    }
    if (tileOffsets.some((start, i) => start + tileByteCounts[i]! > this.size)) return { page: undefined, next };
    return {
      page: {
        width,
        height,
        tileWidth,
        tileHeight,
        compression: one(TAG.compression, 1)!,
        photometric: one(TAG.photometric, -1)!,
        samplesPerPixel: one(TAG.samplesPerPixel, 1)!,
        bitsPerSample: same(values.get(TAG.bitsPerSample) ?? [1]),
        sampleFormat: same(values.get(TAG.sampleFormat) ?? [1]),
        extraSamples: values.get(TAG.extraSamples)?.length ?? 0,
        planarConfig,
        tileOffsets,
        tileByteCounts,
        jpegTables,
        orientation: one(TAG.orientation, 1)!,
      },
      next,
    };
  }

  private numbers(data: Buffer, type: number, n: number): number[] {
    const out = new Array<number>(n);
    for (let i = 0; i < n; i++) {
      if (type === 3) out[i] = this.u16(data, i * 2);
      else if (type === 4) out[i] = this.u32(data, i * 4);
      else if (type === 16) out[i] = Number(this.littleEndian ? data.readBigUInt64LE(i * 8) : data.readBigUInt64BE(i * 8));
      else out[i] = data[i]!;
    }
    return out;
  }
}

/** The value every sample shares (one per sample, or one for all), or 0 when they differ. */
const same = (values: number[]): number => (values.every((value) => value === values[0]) ? values[0]! : 0);
