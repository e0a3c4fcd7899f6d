import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { beforeAll, describe, expect, it } from 'vitest';
import { directorySpans, formatSpans, MAX_SPANS, merged, parseSpans, prefetch, type ByteSpan } from '../../src/derivatives/directories.js';
import { buildPyramid } from '../../src/image/pyramid/convert.js';
import { TiffLayout } from '../../src/image/tiles/tiff-layout.js';
import { bufferReader, type RangeReader } from '../../src/source/range-reader.js';

let pyramidPath: string;
let bytes: Buffer;

// Noise does not compress: each level's tiles push its directory far from the previous one,
// as in a photograph's pyramid (a flat chart's directories would all sit together).
beforeAll(async () => {
  const dir = await mkdtemp(join(tmpdir(), 'directories-'));
  const flat = join(dir, 'flat.png');
  await sharp({ create: { width: 3000, height: 2000, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 60 } } }).png().toFile(flat);
  pyramidPath = join(dir, 'pyramid.tif');
  await buildPyramid(flat, pyramidPath, { tileSize: 256, quality: 85, maxInputPixels: 100_000_000 });
  bytes = await readFile(pyramidPath);
}, 120_000);

/** A reader over the file that notes every read. */
function recording(): { reader: RangeReader; reads: ByteSpan[] } {
  const inner = bufferReader(bytes);
  const reads: ByteSpan[] = [];
  return { reads, reader: { size: inner.size, read: (offset, length) => (reads.push({ offset, length }), inner.read(offset, length)) } };
}

describe('directory spans of a derivative pyramid', () => {
  it('cover every read a server makes walking all directories, in fewer, sorted, separate spans', async () => {
    const spans = await directorySpans(pyramidPath);
    const { reader, reads } = recording();
    expect((await (await TiffLayout.open(reader))!.all()).length).toBeGreaterThan(3);
    expect(bytes.length).toBeGreaterThan(1_000_000);
    for (const read of reads) expect(spans.some((s) => s.offset <= read.offset && read.offset + read.length <= s.offset + s.length)).toBe(true);
    expect(spans.length).toBeGreaterThan(1);
    expect(spans.length).toBeLessThan(reads.length);
    for (let i = 1; i < spans.length; i++) expect(spans[i]!.offset).toBeGreaterThan(spans[i - 1]!.offset + spans[i - 1]!.length);
    // Far less than the file: directories and the small levels' tail, not the tiles.
    expect(spans.reduce((sum, s) => sum + s.length, 0)).toBeLessThan(bytes.length / 2);
  });

  it('once prefetched, walking the directories reads nothing more', async () => {
    const spans = await directorySpans(pyramidPath);
    // A reader that keeps what it fetched, as the block cache does.
    const { reader: fetching, reads } = recording();
    const kept: Array<{ offset: number; bytes: Buffer }> = [];
    const caching: RangeReader = {
      size: bytes.length,
      read: async (offset, length) => {
        const hit = kept.find((k) => k.offset <= offset && offset + length <= k.offset + k.bytes.length);
        if (hit) return hit.bytes.subarray(offset - hit.offset, offset - hit.offset + length);
        const fetched = await fetching.read(offset, length);
        kept.push({ offset, bytes: fetched });
        return fetched;
      },
    };
    await prefetch({ reader: caching, whole: async () => bytes, onDisk: false }, spans);
    expect(reads).toHaveLength(spans.length);
    await (await TiffLayout.open(caching))!.all();
    expect(reads).toHaveLength(spans.length);
  });

  it('is empty for a file that is not a TIFF', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'directories-'));
    const jpeg = join(dir, 'flat.jpg');
    await sharp({ create: { width: 64, height: 64, channels: 3, background: '#123456' } }).jpeg().toFile(jpeg);
    expect(await directorySpans(jpeg)).toEqual([]);
  });

  it('joins overlapping and near reads, keeps far ones apart', () => {
    expect(merged([{ offset: 500_000, length: 10 }, { offset: 0, length: 8 }, { offset: 8, length: 100 }, { offset: 200, length: 50 }])).toEqual([
      { offset: 0, length: 250 },
      { offset: 500_000, length: 10 },
    ]);
  });
});

describe('spans as a marker records them', () => {
  it('round trip', () => {
    const spans = [{ offset: 0, length: 65_536 }, { offset: 19_791_872, length: 12_000 }];
    expect(parseSpans(formatSpans(spans), 20_000_000)).toEqual(spans);
  });

  it('are ignored when missing or malformed (older markers, edited metadata): the reader walks the directories itself', () => {
    expect(parseSpans(undefined, 100)).toEqual([]);
    expect(parseSpans('', 100)).toEqual([]);
    expect(parseSpans('0+10,x', 100)).toEqual([]);
    expect(parseSpans('0+-1', 100)).toEqual([]);
    expect(parseSpans('0+0', 100)).toEqual([]);
    expect(parseSpans('90+20', 100)).toEqual([]);
    expect(parseSpans('99999999999999999999+1', 100)).toEqual([]);
    expect(parseSpans(Array.from({ length: MAX_SPANS + 1 }, (_, i) => `${i}+1`).join(','), 100)).toEqual([]);
  });
});
