import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IiifError } from '../../../src/errors.js';
import { jp2Header, levelSize, type Jp2Header } from '../../../src/image/jp2/codestream.js';
import { decodeJp2, jp2Available, jp2UnavailableReason, openJpegVersion, type Jp2DecodeRequest } from '../../../src/image/jp2/decoder.js';
import { projectRoot } from '../../../src/paths.js';
import { cod, codestream, makeSamples, opjCompress, opjDecompress, photoPng, qcd, segment, siz, tilePart } from './fixtures.js';

const run = promisify(execFile);
const MAX_SOURCE_PIXELS = 268_402_689;
const limits = { maxPixels: 16_000_000, maxSourcePixels: MAX_SOURCE_PIXELS };

/** The IiifError a promise rejects with (failing the test on anything else). */
async function rejection(promise: Promise<unknown>): Promise<IiifError> {
  const error = await promise.then(
    () => new Error('expected a rejection'),
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(IiifError);
  return error as IiifError;
}

/** Peak resident size of this process, in MB, which only ever grows. */
const peakMb = () => process.resourceUsage().maxRSS / 1024;

/** The reference-grid area opj_decompress needs (-d) for a region of a reduced level. */
function referenceArea(header: Jp2Header, reduce: number, region: { x: number; y: number; width: number; height: number }): number[] {
  const scale = 2 ** reduce;
  const x = (Math.ceil(header.x0 / scale) + region.x) * scale;
  const y = (Math.ceil(header.y0 / scale) + region.y) * scale;
  const right = Math.min((Math.ceil(header.x0 / scale) + region.x + region.width) * scale, header.x0 + header.width);
  const bottom = Math.min((Math.ceil(header.y0 / scale) + region.y + region.height) * scale, header.y0 + header.height);
  return [x, y, right, bottom];
}

describe('decodeJp2 against opj_decompress', () => {
  let dir: string;
  let samples: Record<string, string>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'jp2-decode-'));
    samples = await makeSamples(dir);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('is available, on Debian OpenJPEG 2.5', () => {
    expect(jp2Available()).toBe(true);
    expect(jp2UnavailableReason()).toBeUndefined();
    expect(openJpegVersion()).toMatch(/^2\.5\./);
  });

  const names = ['tiled.jp2', 'untiled-grey.jp2', 'deep.jp2', 'offset.j2k', 'alpha.jp2', 'grey-alpha.jp2', 'ycc420.j2k', 'signed.j2k'];
  it.each(names)('%s: every area and level has the pixels opj_decompress gives (within 1 where precision is cut to 8 bits)', async (name) => {
    const file = await readFile(samples[name]!);
    const header = jp2Header(file, MAX_SOURCE_PIXELS);
    const smallest = levelSize(header, header.levels);
    const half = levelSize(header, 1);
    const requests: Array<Pick<Jp2DecodeRequest, 'reduce' | 'region'>> = [
      // A tile's worth across tile and precinct boundaries, at full size.
      { reduce: 0, region: { x: 200, y: 250, width: 256, height: 256 } },
      { reduce: 0, region: { x: 1, y: 3, width: 5, height: 2 } },
      // The bottom-right corner of level 1, odd sizes.
      { reduce: 1, region: { x: half.width - 131, y: half.height - 77, width: 131, height: 77 } },
      { reduce: 2, region: { x: 33, y: 7, width: 97, height: 180 } },
      // One pixel, and the whole smallest level.
      { reduce: 3, region: { x: 17, y: 11, width: 1, height: 1 } },
      { reduce: header.levels, region: { x: 0, y: 0, width: smallest.width, height: smallest.height } },
    ];
    for (const request of requests) {
      const ours = await decodeJp2(file, { ...request, ...limits });
      const reference = await referencePixels(samples[name]!, header, request.reduce, request.region!);
      expect([ours.width, ours.height]).toEqual([request.region!.width, request.region!.height]);
      expect([reference.width, reference.height, reference.channels]).toEqual([ours.width, ours.height, ours.channels]);
      const top = 2 ** reference.depth - 1;
      let worst = 0;
      for (let i = 0; i < ours.data.length; i++) {
        worst = Math.max(worst, Math.abs(ours.data[i]! - Math.round((reference.samples[i]! * 255) / top)));
      }
      // Identical at 8 bits; within 1 where deeper samples are cut to 8 bits.
      expect({ request, worst }).toEqual({ request, worst: header.components.every((c) => c.precision === 8) ? 0 : expect.any(Number) });
      expect(worst).toBeLessThanOrEqual(1);
      // Split over OpenJPEG threads (IIIF_JP2_DECODE_THREADS), the same bytes.
      const threaded = await decodeJp2(file, { ...request, ...limits }, 3);
      expect(threaded.data.equals(ours.data)).toBe(true);
    }
  });

  /**
   * opj_decompress's pixels for a region of a level: decoded with -d for exactly that area, except
   * for subsampled chroma. There its sYCC conversion (color.c, sycc420_to_rgb) pairs luma and
   * chroma by the parity of the area's full-resolution origin, which is not their parity at a
   * reduced level, and gives an odd first column Cb = Cr = 0; so the reference is its whole
   * level (origin 0, where that holds), cut to the region.
   */
  async function referencePixels(path: string, header: Jp2Header, reduce: number, region: { x: number; y: number; width: number; height: number }) {
    if (header.components.every((c) => c.dx === 1 && c.dy === 1)) return opjDecompress(path, dir, reduce, referenceArea(header, reduce, region));
    const whole = await opjDecompress(path, dir, reduce);
    const { channels } = whole;
    const samples = new Uint8Array(region.width * region.height * channels);
    for (let row = 0; row < region.height; row++) {
      const from = ((region.y + row) * whole.width + region.x) * channels;
      samples.set(whole.samples.subarray(from, from + region.width * channels), row * region.width * channels);
    }
    return { ...whole, samples, width: region.width, height: region.height };
  }

  it('decodes the whole level when no region is given', async () => {
    const file = await readFile(samples['tiled.jp2']!);
    const whole = await decodeJp2(file, { reduce: 2, ...limits });
    const level = levelSize(jp2Header(file, MAX_SOURCE_PIXELS), 2);
    expect([whole.width, whole.height, whole.channels, whole.data.length]).toEqual([level.width, level.height, 3, level.width * level.height * 3]);
    const part = await decodeJp2(file, { reduce: 2, region: { x: 10, y: 20, width: 30, height: 40 }, ...limits });
    for (let row = 0; row < 40; row++) {
      const from = ((20 + row) * level.width + 10) * 3;
      expect(part.data.subarray(row * 90, row * 90 + 90)).toEqual(whole.data.subarray(from, from + 90));
    }
  });

  it('refuses an area over maxPixels with a 413 before decoding', async () => {
    const file = await readFile(samples['tiled.jp2']!);
    const error = await rejection(decodeJp2(file, { reduce: 0, maxPixels: 1_000_000, maxSourcePixels: MAX_SOURCE_PIXELS }));
    expect([error.statusCode, error.code]).toEqual([413, 'IIIF_RENDER_TOO_LARGE']);
    expect((await decodeJp2(file, { reduce: 1, maxPixels: 600 * 450, maxSourcePixels: MAX_SOURCE_PIXELS })).width).toBe(600);
    const source = await rejection(decodeJp2(file, { reduce: 6, maxPixels: 1_000_000, maxSourcePixels: 1_000_000 }));
    expect([source.statusCode, source.code]).toEqual([413, 'IIIF_SOURCE_TOO_LARGE']);
  });

  it('takes reduce and region outside the image for a caller mistake (RangeError)', async () => {
    const file = await readFile(samples['tiled.jp2']!);
    await expect(decodeJp2(file, { reduce: 7, ...limits })).rejects.toThrow(RangeError);
    await expect(decodeJp2(file, { reduce: 1, region: { x: 590, y: 0, width: 11, height: 1 }, ...limits })).rejects.toThrow(RangeError);
    await expect(decodeJp2(file, { reduce: 0, region: { x: 0, y: 0, width: 0, height: 1 }, ...limits })).rejects.toThrow(RangeError);
  });

  it('rejects truncated files with a 422, in the header or anywhere in the tile data', async () => {
    const file = await readFile(samples['tiled.jp2']!);
    const { headerLength, codestreamOffset } = jp2Header(file, MAX_SOURCE_PIXELS);
    // A JP2 file says how long its codestream is: a shorter file fails the header check.
    // A raw codestream does not: OpenJPEG (in strict mode) notices the missing data.
    const raw = file.subarray(codestreamOffset);
    const cases: Array<[Buffer, RegExp]> = [
      [file.subarray(0, headerLength - 10), /damaged or unsupported: the "jp2c" box runs past the end/],
      [file.subarray(0, file.length - 1), /damaged or unsupported: the "jp2c" box runs past the end/],
      [raw.subarray(0, headerLength - codestreamOffset - 10), /damaged or unsupported: it ends inside its header/],
      ...[headerLength - codestreamOffset + 40, Math.floor(raw.length / 2), raw.length - 100, raw.length - 2].map((length): [Buffer, RegExp] => [raw.subarray(0, length), /cannot be decoded: \S/]),
    ];
    for (const [truncated, reason] of cases) {
      const error = await rejection(decodeJp2(truncated, { reduce: 0, ...limits }));
      expect([truncated.length, error.statusCode, error.code, error.message]).toEqual([truncated.length, 422, 'IIIF_UNDECODABLE_SOURCE', expect.stringMatching(reason)]);
    }
  });

  it('rejects a damaged tile-part header with a 422, and damaged coded data with a 422 or pixels, never anything else', async () => {
    const file = await readFile(samples['tiled.jp2']!);
    const { headerLength } = jp2Header(file, MAX_SOURCE_PIXELS);
    const sot = Buffer.from(file);
    sot.writeUInt32BE(0xffff_fff0, headerLength + 4); // the first tile-part's length (Psot)
    expect((await rejection(decodeJp2(sot, { reduce: 0, ...limits }))).statusCode).toBe(422);
    for (let seed = 1; seed <= 20; seed++) {
      const damaged = Buffer.from(file);
      for (let k = 0; k < 40; k++) damaged[headerLength + ((seed * 7919 + k * 104_729) % (file.length - headerLength))] = (seed * 31 + k) & 0xff;
      const outcome = await decodeJp2(damaged, { reduce: 0, ...limits }).then(
        (raster) => raster.width,
        (error: unknown) => (error instanceof IiifError ? error.statusCode : error),
      );
      expect([1200, 422]).toContain(outcome);
    }
  });

  it('keeps the event loop running while a large area decodes on the thread pool', async () => {
    const file = await readFile(samples['deep.jp2']!);
    let ticks = 0;
    const timer = setInterval(() => (ticks += 1), 1);
    try {
      const raster = await decodeJp2(file, { reduce: 0, ...limits });
      expect(raster.width).toBe(1200);
    } finally {
      clearInterval(timer);
    }
    expect(ticks).toBeGreaterThan(0);
  });

  it('decodes on pool threads niced below the event loop, which keeps its priority', async () => {
    const before = threadNiceness();
    const file = await readFile(samples['tiled.jp2']!);
    // More decodes at once than the pool has threads, so every pool thread runs one.
    await Promise.all(Array.from({ length: 8 }, () => decodeJp2(file, { reduce: 0, ...limits })));
    const after = threadNiceness();
    expect(after.get(process.pid)).toBe(before.get(process.pid));
    const lowered = [...after].filter(([tid, nice]) => tid !== process.pid && nice === Math.min(19, before.get(process.pid)! + 10));
    expect(lowered.length).toBeGreaterThanOrEqual(1);
  });
});

/** Nice value of each thread of this process (Linux: field 19 of /proc/self/task/<tid>/stat). */
function threadNiceness(): Map<number, number> {
  const nice = new Map<number, number>();
  for (const tid of readdirSync('/proc/self/task')) {
    const stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    nice.set(Number(tid), Number(stat.slice(stat.lastIndexOf(') ') + 2).split(' ')[16]));
  }
  return nice;
}

describe('hostile JPEG 2000 files through the decoder', () => {
  it('rejects a SIZ that lies about a 16000×16000 image in a few bytes with a 422, without a large allocation', async () => {
    const lying = codestream(siz({ xsiz: 16_000, ysiz: 16_000, tileWidth: 16_000, tileHeight: 16_000 }), cod(6), qcd(6));
    const before = peakMb();
    for (const reduce of [6, 3]) {
      const error = await rejection(decodeJp2(lying, { reduce, ...limits }));
      expect([reduce, error.statusCode]).toEqual([reduce, 422]);
    }
    expect(peakMb() - before).toBeLessThan(64);
  });

  it('rejects huge tiles on a small image, and a tile grid OpenJPEG would spend hundreds of MB on, without decoding', async () => {
    const huge = codestream(siz({ tileWidth: 0x7fff_ffff, tileHeight: 0x7fff_ffff }), cod(), qcd());
    const tiny = codestream(siz({ xsiz: 200, ysiz: 200, tileWidth: 1, tileHeight: 1 }), cod(), qcd());
    const before = peakMb();
    expect((await rejection(decodeJp2(huge, { reduce: 0, ...limits }))).statusCode).toBe(422);
    expect((await rejection(decodeJp2(tiny, { reduce: 0, ...limits }))).statusCode).toBe(413);
    expect(peakMb() - before).toBeLessThan(64);
  });

  it('refuses coding that would make OpenJPEG set up gigabytes, in the main or a tile-part header, with a 413 before it starts', async () => {
    const tinyBlocks = codestream(siz({ xsiz: 16_000, ysiz: 16_000, tileWidth: 16_000, tileHeight: 16_000 }), cod(5, { block: 0 }), qcd());
    const tinyPrecincts = codestream(siz({ xsiz: 4000, ysiz: 4000, tileWidth: 4000, tileHeight: 4000 }), cod(5, { precincts: Array(6).fill(0x11) }), qcd());
    const tiled = [Buffer.from([0xff, 0x4f]), siz({ xsiz: 8000, ysiz: 8000, tileWidth: 4000, tileHeight: 4000 }), cod(), qcd()];
    const inTilePart = Buffer.concat([...tiled, tilePart(0), tilePart(1), tilePart(2, segment(0xff53, Buffer.from([0, 0, 5, 0, 0, 0, 1]))), Buffer.from([0xff, 0xd9])]);
    const before = peakMb();
    for (const file of [tinyBlocks, tinyPrecincts, inTilePart]) {
      const error = await rejection(decodeJp2(file, { reduce: 0, region: { x: 0, y: 0, width: 256, height: 256 }, ...limits }));
      expect([error.statusCode, error.message]).toEqual([413, expect.stringContaining('blocks too small')]);
    }
    expect(peakMb() - before).toBeLessThan(64);
  });

  it('rejects what is not JPEG 2000 and headers with too many components with a 422', async () => {
    expect((await rejection(decodeJp2(Buffer.from('not an image'), { reduce: 0, ...limits }))).statusCode).toBe(422);
    expect((await rejection(decodeJp2(codestream(siz({ count: 16_384 }), cod(), qcd()), { reduce: 0, ...limits }))).statusCode).toBe(422);
  });
});

describe('the native addon itself', () => {
  type Native = { decode(area: unknown): Promise<{ width: number }>; close(): Promise<void> };
  const addon = createRequire(import.meta.url)(join(projectRoot(), 'native', 'openjp2', 'build', 'Release', 'openjp2.node')) as {
    Decoder: new (input: unknown, options?: unknown) => Native;
  };
  const area = { x0: 0, y0: 0, x1: 64, y1: 48 };
  const image = codestream(siz(), cod(), qcd());
  const open = (reduce = 0, input: Buffer | string = image, size = image.length) => new addon.Decoder(input, { size, reduce, reusable: true, threads: 2 });

  it('refuses an area over maxPixels before decoding, and says why in its error code', async () => {
    await expect(open().decode({ ...area, maxPixels: 64 * 48 - 1 })).rejects.toMatchObject({ code: 'ERR_JP2_TOO_LARGE' });
    await expect(open().decode({ ...area, x1: 65, maxPixels: 1e6 })).rejects.toMatchObject({ code: 'ERR_JP2_ARGUMENT' });
    await expect(open(6).decode({ ...area, maxPixels: 1e6 })).rejects.toMatchObject({ code: 'ERR_JP2_ARGUMENT' });
    // Its one empty tile-part has no data: a decode error from OpenJPEG, as a short message.
    await expect(open().decode({ ...area, maxPixels: 1e6 })).rejects.toMatchObject({ code: 'ERR_JP2_UNDECODABLE', message: expect.stringMatching(/^.{1,160}$/) });
  });

  it('refuses a local file that is missing or not the size it was given, as changed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jp2-native-'));
    try {
      const path = join(dir, 'image.j2k');
      await writeFile(path, image);
      await expect(open(0, path, image.length + 1).decode({ ...area, maxPixels: 1e6 })).rejects.toMatchObject({ code: 'ERR_JP2_CHANGED' });
      await expect(open(0, join(dir, 'gone.j2k')).decode({ ...area, maxPixels: 1e6 })).rejects.toMatchObject({ code: 'ERR_JP2_CHANGED' });
      // The right size reaches OpenJPEG, which finds the tile-part empty.
      await expect(open(0, path).decode({ ...area, maxPixels: 1e6 })).rejects.toMatchObject({ code: 'ERR_JP2_UNDECODABLE' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('runs one call at a time per decoder, none after close, and decodes again only when reusable', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'jp2-native-'));
    const file = await readFile(await opjCompress(dir, 'small.j2k', { bytes: await photoPng(128, 96, 1), ext: 'png' }, ['-n', '3']));
    await rm(dir, { recursive: true, force: true });
    const once = new addon.Decoder(file, { size: file.length, reduce: 1, reusable: false, threads: 1 });
    const first = once.decode({ ...area, maxPixels: 1e6 });
    expect(() => once.decode({ ...area, maxPixels: 1e6 })).toThrow(/busy/);
    expect(() => once.close()).toThrow(/busy/);
    expect((await first).width).toBe(32);
    await expect(once.decode({ ...area, maxPixels: 1e6 })).rejects.toMatchObject({ code: 'ERR_JP2_ARGUMENT' });
    await once.close();
    expect(() => once.decode({ ...area, maxPixels: 1e6 })).toThrow(/closed/);
    const kept = open(1, file, file.length);
    expect((await kept.decode({ ...area, maxPixels: 1e6 })).width).toBe(32);
    expect((await kept.decode({ ...area, x1: 128, maxPixels: 1e6 })).width).toBe(64);
    await kept.close();
  });

  it('throws at once on malformed arguments', () => {
    const valid = { size: image.length, reduce: 0, threads: 1 };
    expect(() => new addon.Decoder(42, { ...valid, size: 1 })).toThrow(TypeError);
    expect(() => new addon.Decoder(image, { ...valid, size: image.length + 1 })).toThrow(RangeError);
    expect(() => new addon.Decoder(image, { ...valid, reduce: 33 })).toThrow(RangeError);
    expect(() => new addon.Decoder(image, { ...valid, threads: 0 })).toThrow(RangeError);
    expect(() => new addon.Decoder(image, { ...valid, threads: 65 })).toThrow(RangeError);
    expect(() => new addon.Decoder(image, { size: image.length, reduce: 0 })).toThrow(TypeError);
    expect(() => new addon.Decoder(image)).toThrow(TypeError);
    expect(() => open().decode({ ...area, maxPixels: -1 })).toThrow(RangeError);
    expect(() => open().decode({ ...area, x0: 1.5, maxPixels: 1 })).toThrow(RangeError);
    expect(() => open().decode({ x0: 0, maxPixels: 1 })).toThrow(TypeError);
    expect(() => open().decode(undefined)).toThrow(TypeError);
  });
});

describe('without the native addon', () => {
  it('says once why JPEG 2000 is unavailable and how to enable it, and refuses decodes with a 501', async () => {
    // The decoder compiled into a project root that has no native/ build.
    const root = await mkdtemp(join(tmpdir(), 'jp2-missing-'));
    try {
      await writeFile(join(root, 'package.json'), '{"type":"module"}');
      const src = join(projectRoot(), 'src');
      await run(process.execPath, [
        join(projectRoot(), 'node_modules', 'typescript', 'bin', 'tsc'),
        ...['--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--types', 'node', '--skipLibCheck'],
        ...['--rootDir', src, '--outDir', join(root, 'dist'), join(src, 'image', 'jp2', 'decoder.ts')],
      ]);
      const probe = `
        const m = await import(${JSON.stringify(join(root, 'dist', 'image', 'jp2', 'decoder.js'))});
        const error = await m.decodeJp2(Buffer.alloc(16), { reduce: 0, maxPixels: 1, maxSourcePixels: 1 }).catch((e) => e);
        console.log(JSON.stringify({ available: m.jp2Available(), reason: m.jp2UnavailableReason(), version: m.openJpegVersion() ?? null,
          error: { name: error.name, status: error.statusCode, code: error.code, message: error.message } }));`;
      const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe], { cwd: root });
      const seen = JSON.parse(stdout) as { available: boolean; reason: string; version: null; error: { name: string; status: number; code: string; message: string } };
      expect(seen.available).toBe(false);
      expect(seen.version).toBeNull();
      expect(seen.reason).toMatch(/JPEG 2000 is unavailable: the native OpenJPEG decoder is not built.*libopenjp2-7-dev.*npm run build:native/);
      expect(seen.error).toMatchObject({ name: 'IiifError', status: 501, code: 'IIIF_FORMAT_UNAVAILABLE' });
      expect(seen.error.message).toMatch(/libopenjp2-7-dev.*npm run build:native/);
      expect(seen.error.message).not.toContain(root);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
