/**
 * Decoders kept open between decodes (src/image/jp2/pool.ts): the pixels are those of a decoder
 * used once (which decoder.system.test.ts compares with opj_decompress), whatever the order of
 * areas and levels; the pool stays within its byte budget, closes idle decoders, and never
 * serves another version of a file from a decoder opened on the old one.
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IiifError } from '../../../src/errors.js';
import { jp2Header, levelSize } from '../../../src/image/jp2/codestream.js';
import { decodeJp2, type Jp2DecodeRequest } from '../../../src/image/jp2/decoder.js';
import { Jp2Decoders, type Jp2File } from '../../../src/image/jp2/pool.js';
import { bufferReader } from '../../../src/source/range-reader.js';
import { makeSamples } from './fixtures.js';

const limits = { maxPixels: 16_000_000, maxSourcePixels: 268_402_689 };

let dir: string;
let samples: Record<string, string>;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'jp2-pool-'));
  samples = await makeSamples(dir);
});
afterAll(() => rm(dir, { recursive: true, force: true }));

/** A sample as the pool takes it: its path for OpenJPEG, its bytes for the header checks. */
async function fileOf(path: string, key = path): Promise<Jp2File & { bytes: Buffer }> {
  const bytes = await readFile(path);
  return { key, header: jp2Header(bytes, limits.maxSourcePixels), reader: bufferReader(bytes), whole: async () => path, bytes };
}

/** Areas of several levels: across tile and precinct boundaries, odd sizes, one pixel, a whole level. */
function requests(file: Jp2File): Array<Pick<Jp2DecodeRequest, 'reduce' | 'region'>> {
  const half = levelSize(file.header, 1);
  return [
    { reduce: 0, region: { x: 200, y: 250, width: 256, height: 256 } },
    { reduce: 1, region: { x: half.width - 131, y: half.height - 77, width: 131, height: 77 } },
    { reduce: 0, region: { x: 1, y: 3, width: 5, height: 2 } },
    { reduce: 2, region: { x: 33, y: 7, width: 97, height: 180 } },
    { reduce: 0, region: { x: 700, y: 500, width: 300, height: 200 } },
    { reduce: 3, region: { x: 17, y: 11, width: 1, height: 1 } },
    { reduce: 2 },
    { reduce: 1, region: { x: 0, y: 0, width: 256, height: 256 } },
    { reduce: 2, region: { x: 100, y: 60, width: 50, height: 40 } },
  ];
}

async function expectSamePixels(pool: Jp2Decoders, file: Jp2File & { bytes: Buffer }, request: Pick<Jp2DecodeRequest, 'reduce' | 'region'>) {
  const kept = await pool.decode(file, { ...request, ...limits });
  const own = await decodeJp2(file.bytes, { ...request, ...limits });
  expect({ request, width: kept.width, height: kept.height, channels: kept.channels }).toEqual({ request, width: own.width, height: own.height, channels: own.channels });
  expect({ request, same: kept.data.equals(own.data) }).toEqual({ request, same: true });
}

describe('kept JPEG 2000 decoders', () => {
  // Single-tile images (kept), a tiled one and one whose JP2 header remaps components (not kept).
  const names: Array<[string, boolean]> = [
    ['untiled-grey.jp2', true],
    ['ycc420.j2k', true],
    ['signed.j2k', true],
    ['grey-alpha.jp2', false],
    ['tiled.jp2', false],
  ];
  it.each(names)('%s: give the pixels of a decoder used once, for areas and levels in any order (kept: %s)', async (name, kept) => {
    const file = await fileOf(samples[name]!);
    const pool = new Jp2Decoders(2 ** 30);
    const asked = requests(file);
    for (const request of [...asked, ...[...asked].reverse(), ...asked]) await expectSamePixels(pool, file, request);
    // One decoder per level asked for, or none.
    expect(pool.usage().idle).toBe(kept ? 4 : 0);
    // Several at once, of the same and of other levels.
    await Promise.all(asked.map((request) => expectSamePixels(pool, file, request)));
    pool.clear();
    expect(pool.usage()).toEqual({ idle: 0, bytes: 0 });
  });

  it('stay within their byte budget, decoding the rest with decoders used once', async () => {
    const file = await fileOf(samples['untiled-grey.jp2']!);
    const probe = new Jp2Decoders(2 ** 30);
    await probe.decode(file, { reduce: 0, region: { x: 0, y: 0, width: 8, height: 8 }, ...limits });
    const one = probe.usage().bytes;
    probe.clear();
    expect(one).toBeGreaterThan(file.bytes.length);

    const pool = new Jp2Decoders(Math.floor(one * 1.5));
    let most = 0;
    const watch = setInterval(() => (most = Math.max(most, pool.usage().bytes)), 1);
    try {
      const asked = requests(file);
      await Promise.all([...asked, ...asked].map((request) => expectSamePixels(pool, file, request)));
      for (const request of asked) await expectSamePixels(pool, file, request);
    } finally {
      clearInterval(watch);
    }
    expect(most).toBeLessThanOrEqual(one * 1.5);
    expect(pool.usage()).toEqual({ idle: 1, bytes: one });
    pool.clear();
  });

  it('close idle decoders after a while, those of a purged file at once, and all on clear', async () => {
    const grey = await fileOf(samples['untiled-grey.jp2']!, 'grey\u0000v1');
    const ycc = await fileOf(samples['ycc420.j2k']!, 'ycc\u0000v1');
    const request = { reduce: 1, region: { x: 0, y: 0, width: 64, height: 64 }, ...limits };
    const pool = new Jp2Decoders(2 ** 30, { idleMs: 100 });
    await pool.decode(grey, request);
    await pool.decode(ycc, request);
    expect(pool.usage().idle).toBe(2);
    pool.forget('grey\u0000');
    expect(pool.usage().idle).toBe(1);
    await waitFor(() => pool.usage().idle === 0);
    expect(pool.usage()).toEqual({ idle: 0, bytes: 0 });
    await pool.decode(grey, request);
    pool.clear();
    expect(pool.usage()).toEqual({ idle: 0, bytes: 0 });
    // After clear nothing is kept.
    await pool.decode(grey, request);
    expect(pool.usage()).toEqual({ idle: 0, bytes: 0 });
  });

  it('never serve a new version of a file from a decoder of the old one, and refuse a file that is not the size its version says', async () => {
    const path = join(dir, 'changing.jp2');
    await copyFile(samples['untiled-grey.jp2']!, path);
    const pool = new Jp2Decoders(2 ** 30);
    const request = { reduce: 0, region: { x: 300, y: 200, width: 128, height: 128 }, ...limits };
    const before = await fileOf(path, 'changing\u0000v1');
    await expectSamePixels(pool, before, request);
    await copyFile(samples['ycc420.j2k']!, path);
    // The new version has its own key: a new decoder, the new pixels.
    await expectSamePixels(pool, await fileOf(path, 'changing\u0000v2'), request);
    expect(pool.usage().idle).toBe(2);
    // A version whose size no longer matches the file (it changed after the version was taken).
    await writeFile(path, Buffer.concat([await readFile(path), Buffer.alloc(10)]));
    const error = await pool.decode({ ...before, key: 'changing\u0000v3' }, request).catch((reason: unknown) => reason);
    expect(error).toBeInstanceOf(IiifError);
    expect([(error as IiifError).statusCode, (error as IiifError).code]).toEqual([503, 'IIIF_SOURCE_CHANGED']);
    pool.clear();
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  for (let i = 0; i < 400 && !condition(); i++) await new Promise((resolve) => setTimeout(resolve, 10));
}
