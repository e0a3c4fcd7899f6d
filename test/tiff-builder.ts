/**
 * Writes classic little-endian TIFF files tag by tag, for what no TIFF writer makes: tiles
 * without JPEGTables, with restart markers or 4:2:2 sampling, and files whose tags lie.
 */

/** SHORT and LONG values, or raw bytes (UNDEFINED); or a reference to values already in the file. */
export type TagValue = { short: number[] } | { long: number[] } | { bytes: Buffer } | { long: { count: number; offset: number } };

export class TiffBuilder {
  private readonly chunks: Buffer[] = [Buffer.alloc(8)];
  private size = 8;
  private readonly directories: Buffer[] = [];
  private readonly directoryOffsets: number[] = [];

  /** Appends bytes (word-aligned); returns where they start. */
  data(bytes: Buffer): number {
    if (this.size % 2) this.append(Buffer.alloc(1));
    const offset = this.size;
    this.append(bytes);
    return offset;
  }

  /** Appends a directory of `tags` (sorted here); directories are chained in the order added. */
  directory(tags: Record<number, TagValue>): void {
    const entries = Object.entries(tags)
      .map(([tag, value]) => [Number(tag), value] as const)
      .sort(([a], [b]) => a - b);
    const table = Buffer.alloc(2 + entries.length * 12 + 4);
    table.writeUInt16LE(entries.length, 0);
    entries.forEach(([tag, value], i) => {
      const at = 2 + i * 12;
      table.writeUInt16LE(tag, at);
      if ('bytes' in value) {
        table.writeUInt16LE(7, at + 2);
        table.writeUInt32LE(value.bytes.length, at + 4);
        if (value.bytes.length <= 4) value.bytes.copy(table, at + 8);
        else table.writeUInt32LE(this.data(value.bytes), at + 8);
        return;
      }
      const long = 'long' in value;
      const values = long ? value.long : value.short;
      table.writeUInt16LE(long ? 4 : 3, at + 2);
      if (!Array.isArray(values)) {
        table.writeUInt32LE(values.count, at + 4);
        table.writeUInt32LE(values.offset, at + 8);
        return;
      }
      table.writeUInt32LE(values.length, at + 4);
      const packed = Buffer.alloc(values.length * (long ? 4 : 2));
      values.forEach((v, j) => (long ? packed.writeUInt32LE(v, j * 4) : packed.writeUInt16LE(v, j * 2)));
      if (packed.length <= 4) packed.copy(table, at + 8);
      else table.writeUInt32LE(this.data(packed), at + 8);
    });
    this.directoryOffsets.push(this.data(table));
    this.directories.push(table);
  }

  build(): Buffer {
    this.chunks[0]!.write('II', 0, 'latin1');
    this.chunks[0]!.writeUInt16LE(42, 2);
    this.chunks[0]!.writeUInt32LE(this.directoryOffsets[0] ?? 0, 4);
    this.directories.forEach((table, i) => table.writeUInt32LE(this.directoryOffsets[i + 1] ?? 0, table.length - 4));
    return Buffer.concat(this.chunks);
  }

  private append(bytes: Buffer): void {
    this.chunks.push(bytes);
    this.size += bytes.length;
  }
}

export const TAG = {
  newSubfileType: 254,
  width: 256,
  height: 257,
  bitsPerSample: 258,
  compression: 259,
  photometric: 262,
  samplesPerPixel: 277,
  planarConfig: 284,
  tileWidth: 322,
  tileHeight: 323,
  tileOffsets: 324,
  tileByteCounts: 325,
  jpegTables: 347,
  ycbcrSubsampling: 530,
} as const;

/** The tags of one tiled JPEG page whose tiles (complete JPEGs or abbreviated ones) are already in the file. */
export function jpegPageTags(page: {
  width: number;
  height: number;
  tileSize: number;
  photometric: number;
  samples: number;
  offsets: number[];
  counts: number[];
  jpegTables?: Buffer;
  subsampling?: [number, number];
}): Record<number, TagValue> {
  const tags: Record<number, TagValue> = {
    [TAG.width]: { long: [page.width] },
    [TAG.height]: { long: [page.height] },
    [TAG.bitsPerSample]: { short: Array<number>(page.samples).fill(8) },
    [TAG.compression]: { short: [7] },
    [TAG.photometric]: { short: [page.photometric] },
    [TAG.samplesPerPixel]: { short: [page.samples] },
    [TAG.planarConfig]: { short: [1] },
    [TAG.tileWidth]: { long: [page.tileSize] },
    [TAG.tileHeight]: { long: [page.tileSize] },
    [TAG.tileOffsets]: { long: page.offsets },
    [TAG.tileByteCounts]: { long: page.counts },
  };
  if (page.jpegTables) tags[TAG.jpegTables] = { bytes: page.jpegTables };
  if (page.subsampling) tags[TAG.ycbcrSubsampling] = { short: page.subsampling };
  return tags;
}
