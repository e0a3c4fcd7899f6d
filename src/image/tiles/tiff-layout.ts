import { open, type FileHandle } from 'node:fs/promises';

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
}

const TAG = {
  width: 256,
  height: 257,
  bitsPerSample: 258,
  compression: 259,
  photometric: 262,
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
 * Reads the page structure of a classic (non-Big) TIFF: tile grids, tile offsets and JPEG
 * tables. Returns undefined for anything it does not fully understand — the caller then simply
 * renders through sharp — so a malformed file can never make this throw.
 */
export async function readTiffLayout(path: string): Promise<TiffPage[] | undefined> {
  let file: FileHandle | undefined;
  try {
    file = await open(path, 'r');
    const size = (await file.stat()).size;
    const reader = new Reader(file, size);
    const header = await reader.bytes(0, 8);
    const order = header.toString('latin1', 0, 2);
    if (order !== 'II' && order !== 'MM') return undefined;
    reader.littleEndian = order === 'II';
    if (reader.u16(header, 2) !== 42) return undefined;
    const pages: TiffPage[] = [];
    const seen = new Set<number>();
    let offset = reader.u32(header, 4);
    while (offset !== 0 && pages.length < MAX_PAGES && !seen.has(offset)) {
      seen.add(offset);
      const { page, next } = await reader.page(offset).catch((error: unknown) => {
        // Out of budget: the pages read so far stand; later ones render through libvips.
        if (error instanceof OverBudget) return { page: undefined, next: 0 };
        throw error;
      });
      if (!page) return pages.length > 0 ? pages : undefined;
      pages.push(page);
      offset = next;
    }
    return pages;
  } catch {
    return undefined;
  } finally {
    await file?.close();
  }
}

/** The file declares more tag values than any image within the input limits needs. */
class OverBudget extends Error {}

class Reader {
  littleEndian = true;
  /** Tag values (array entries, bytes of JPEG tables) still allowed to be read from this file. */
  private valuesLeft = MAX_FILE_VALUES;

  constructor(
    private readonly file: FileHandle,
    private readonly size: number,
  ) {}

  async bytes(offset: number, length: number): Promise<Buffer> {
    if (offset < 0 || length < 0 || offset + length > this.size) throw new RangeError('outside the file');
    const buffer = Buffer.alloc(length);
    await this.file.read(buffer, 0, length, offset);
    return buffer;
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
