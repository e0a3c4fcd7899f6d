import { open } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import type { RangeReader } from '../source/range-reader.js';
import type { ImageFile, Piece } from '../source/source.js';
import { TiffLayout } from '../image/tiles/tiff-layout.js';

/** A byte range of a derivative's pyramid. */
export interface ByteSpan {
  offset: number;
  length: number;
}

/**
 * Reads closer together than this are fetched as one span: one request costs more than the
 * bytes between them (a block of the S3 block cache).
 */
const MERGE_GAP = 64 * 1024;
/** More spans than this do not fit the marker's metadata (2 KB on S3) with room to spare: none are recorded then. */
export const MAX_SPANS = 32;
/**
 * The marker carries the spans' bytes when they total at most this (a 12000×9000 pyramid's are
 * about 110 KB: its level-0 tile table and the small levels' tail), so that opening a derivative
 * takes the request that finds it and nothing more.
 */
export const MAX_CARRIED_BYTES = 1024 * 1024;

/**
 * The byte spans a reader of this pyramid needs for its directories (header, every level's
 * directory and tile tables, the tail with the small levels), found by walking them exactly
 * as a server does (TiffLayout) over the local file and noting every read. A container that
 * opens the derivative fetches them all at once instead of one directory after another (a
 * pyramid's directories lie far apart: each level's after its tiles). Empty when the file is
 * not a TIFF the walk understands, or needs more spans than MAX_SPANS.
 */
export async function directorySpans(pyramidPath: string): Promise<ByteSpan[]> {
  const file = await open(pyramidPath, 'r');
  try {
    const { size } = await file.stat();
    const reads: ByteSpan[] = [];
    const recording: RangeReader = {
      size,
      read: async (offset, length) => {
        reads.push({ offset, length });
        const bytes = Buffer.alloc(length);
        await file.read(bytes, 0, length, offset);
        return bytes;
      },
    };
    const layout = await TiffLayout.open(recording);
    if (!layout) return [];
    await layout.all();
    const spans = merged(reads);
    return spans.length <= MAX_SPANS ? spans : [];
  } finally {
    await file.close();
  }
}

/** The spans' bytes in the pyramid file, one after another (what the marker carries); undefined when they are too many. */
export async function spanBytes(pyramidPath: string, spans: readonly ByteSpan[]): Promise<Buffer | undefined> {
  const total = totalLength(spans);
  if (total === 0 || total > MAX_CARRIED_BYTES) return undefined;
  const file = await open(pyramidPath, 'r');
  try {
    const bytes = Buffer.alloc(total);
    let at = 0;
    for (const { offset, length } of spans) {
      await file.read(bytes, at, length, offset);
      at += length;
    }
    return bytes;
  } finally {
    await file.close();
  }
}

/** The spans' bytes (spanBytes), cut back into the spans they were made of. */
export function piecesOf(spans: readonly ByteSpan[], bytes: Buffer): Piece[] {
  let at = 0;
  return spans.map(({ offset, length }) => ({ offset, bytes: bytes.subarray(at, (at += length)) }));
}

/** The bytes a marker carried, as pieces; none when they do not add up to its spans and CRC-32 (an older or damaged marker). */
export function carriedPieces(spans: readonly ByteSpan[], carried: Buffer | undefined, crc: string | undefined): Piece[] {
  if (!carried || crc === undefined || carried.length !== totalLength(spans) || String(crc32(carried)) !== crc) return [];
  return piecesOf(spans, carried);
}

const totalLength = (spans: readonly ByteSpan[]): number => spans.reduce((sum, { length }) => sum + length, 0);

/** Sorted, overlapping or near spans joined. */
export function merged(reads: readonly ByteSpan[]): ByteSpan[] {
  const spans: ByteSpan[] = [];
  for (const { offset, length } of [...reads].sort((a, b) => a.offset - b.offset)) {
    const last = spans.at(-1);
    if (last && offset <= last.offset + last.length + MERGE_GAP) last.length = Math.max(last.length, offset + length - last.offset);
    else spans.push({ offset, length });
  }
  return spans;
}

/** Spans as the marker's metadata records them: `offset+length` joined by commas. */
export function formatSpans(spans: readonly ByteSpan[]): string {
  return spans.map(({ offset, length }) => `${offset}+${length}`).join(',');
}

/** The spans recorded in a marker, within a pyramid of `size` bytes; none for a missing or malformed record (older markers have none). */
export function parseSpans(text: string | undefined, size: number): ByteSpan[] {
  if (!text) return [];
  const spans: ByteSpan[] = [];
  for (const part of text.split(',').slice(0, MAX_SPANS + 1)) {
    const match = /^(\d+)\+(\d+)$/.exec(part);
    if (!match) return [];
    const [offset, length] = [Number(match[1]), Number(match[2])];
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || length === 0 || offset + length > size) return [];
    spans.push({ offset, length });
  }
  return spans.length <= MAX_SPANS ? spans : [];
}

/**
 * Hands the file the spans' bytes the marker carried or, when there are none (or they do not
 * fit its memory), fetches the spans at once: read ahead into memory where the file can, so
 * that walking them read by read writes nothing to the disk cache. Either way, walking the
 * directories afterwards costs no further request. A failure is left to the reads that follow,
 * which report it as they would without this.
 */
export async function prefetch(file: ImageFile, spans: readonly ByteSpan[], carried: readonly Piece[] = []): Promise<void> {
  if (carried.length > 0 && file.preload?.(carried)) return;
  const load = file.readAhead ? file.readAhead.bind(file) : (offset: number, length: number) => file.reader.read(offset, length);
  await Promise.all(spans.map(({ offset, length }) => load(offset, length))).catch(() => undefined);
}
