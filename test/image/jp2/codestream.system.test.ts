import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { IiifError } from '../../../src/errors.js';
import { bufferReader } from '../../../src/source/range-reader.js';
import { checkTileParts, JP2_HEADER_PREFIX_BYTES, jp2Header, levelSize, readJp2Header, type Jp2Header } from '../../../src/image/jp2/codestream.js';
import { box, cod, codestream, jp2Boxes, makeSamples, opjDump, qcd, SAMPLE_HEIGHT, SAMPLE_WIDTH, segment, siz, tilePart } from './fixtures.js';

const MAX_PIXELS = 268_402_689;
const PROGRESSIONS = ['LRCP', 'RLCP', 'RPCL', 'PCRL', 'CPRL'];

/** The IiifError a call throws (failing the test if it throws anything else or nothing). */
function refusal(call: () => unknown): IiifError {
  try {
    call();
  } catch (error) {
    expect(error).toBeInstanceOf(IiifError);
    return error as IiifError;
  }
  throw new Error('expected a refusal');
}

async function asyncRefusal(promise: Promise<unknown>): Promise<IiifError> {
  const error = await promise.then(() => new Error('expected a refusal'), (reason: unknown) => reason);
  expect(error).toBeInstanceOf(IiifError);
  return error as IiifError;
}

describe('JPEG 2000 header from opj_compress files', () => {
  let dir: string;
  let samples: Record<string, string>;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'jp2-header-'));
    samples = await makeSamples(dir);
  });
  afterAll(() => rm(dir, { recursive: true, force: true }));

  it('reads what opj_dump reports, for every layout', async () => {
    for (const [name, path] of Object.entries(samples)) {
      const dump = await opjDump(path);
      const header = jp2Header(await readFile(path), MAX_PIXELS);
      expect({ name, container: header.container }).toEqual({ name, container: name.endsWith('.jp2') ? 'jp2' : 'j2k' });
      expect(header.width).toBe(dump.x1 - dump.x0);
      expect(header.height).toBe(dump.y1 - dump.y0);
      expect([header.x0, header.y0]).toEqual([dump.x0, dump.y0]);
      expect(header.tile).toEqual(dump.tile);
      expect(header.components).toEqual(
        dump.components.map((c) => ({
          precision: c.prec,
          signed: c.sgnd,
          dx: c.dx,
          dy: c.dy,
          coding: {
            levels: c.numresolutions - 1,
            codeBlock: { width: 2 ** c.cblkw, height: 2 ** c.cblkh },
            precincts: c.precincts.map(([x, y]) => ({ width: 2 ** x!, height: 2 ** y! })),
          },
        })),
      );
      expect(header.levels).toBe(Math.min(...dump.components.map((c) => c.numresolutions)) - 1);
      expect(header.layers).toBe(dump.layers);
      expect(header.progression).toBe(PROGRESSIONS[dump.progression]);
    }
  });

  it('finds nothing to object to in their tile-part headers', async () => {
    for (const path of Object.values(samples)) {
      const file = await readFile(path);
      await expect(checkTileParts(bufferReader(file), jp2Header(file, MAX_PIXELS))).resolves.toBeUndefined();
    }
  });

  it('finds the layouts the samples were made with', async () => {
    const tiled = jp2Header(await readFile(samples['tiled.jp2']!), MAX_PIXELS);
    expect(tiled).toMatchObject({ width: SAMPLE_WIDTH, height: SAMPLE_HEIGHT, levels: 6, layers: 4, progression: 'RPCL' });
    expect(tiled.tile).toEqual({ width: 256, height: 256, x0: 0, y0: 0, across: 5, down: 4 });
    const untiled = jp2Header(await readFile(samples['untiled-grey.jp2']!), MAX_PIXELS);
    expect(untiled.tile).toMatchObject({ width: SAMPLE_WIDTH, height: SAMPLE_HEIGHT, across: 1, down: 1 });
    expect(untiled.components).toHaveLength(1);
    const deep = jp2Header(await readFile(samples['deep.jp2']!), MAX_PIXELS);
    expect(deep.components.map((c) => c.precision)).toEqual([16, 16, 16]);
    const offset = jp2Header(await readFile(samples['offset.j2k']!), MAX_PIXELS);
    expect(offset).toMatchObject({ container: 'j2k', codestreamOffset: 0, x0: 37, y0: 21, width: SAMPLE_WIDTH, height: SAMPLE_HEIGHT });
    const ycc = jp2Header(await readFile(samples['ycc420.j2k']!), MAX_PIXELS);
    expect(ycc.components.map((c) => [c.dx, c.dy])).toEqual([[1, 1], [2, 2], [2, 2]]);
    expect(jp2Header(await readFile(samples['signed.j2k']!), MAX_PIXELS).components).toMatchObject([{ precision: 12, signed: true, dx: 1, dy: 1 }]);
    // -c [128,128],[128,128],[64,64]: given for the highest resolutions, halving below.
    expect(tiled.components[0]!.coding.precincts.map((p) => p.width)).toEqual([4, 8, 16, 32, 64, 128, 128]);
    // opj_compress marks an alpha channel with channel definitions (cdef); colour and grey have none.
    const remaps = async (name: string) => jp2Header(await readFile(samples[name]!), MAX_PIXELS).remapsComponents;
    expect(await Promise.all(['alpha.jp2', 'grey-alpha.jp2', 'tiled.jp2', 'untiled-grey.jp2', 'offset.j2k'].map(remaps))).toEqual([true, true, false, false, false]);
  });

  it('says whether the JP2 header remaps components (pclr, cmap, cdef), looking inside its header box only', () => {
    const codestreamBox = box('jp2c', codestream(siz(), cod(), qcd()));
    const withChild = (type: string) => {
      const boxes = jp2Boxes();
      const child = box(type, Buffer.alloc(6));
      // The header box is the last of jp2Boxes(): grow it by the child.
      const header = boxes.lastIndexOf(Buffer.from('jp2h'));
      const grown = Buffer.concat([boxes, child]);
      grown.writeUInt32BE(boxes.readUInt32BE(header - 4) + child.length, header - 4);
      return Buffer.concat([grown, codestreamBox]);
    };
    for (const type of ['pclr', 'cmap', 'cdef']) expect(jp2Header(withChild(type), MAX_PIXELS).remapsComponents).toBe(true);
    expect(jp2Header(withChild('res '), MAX_PIXELS).remapsComponents).toBe(false);
    // A cdef box outside the header does not count.
    expect(jp2Header(Buffer.concat([jp2Boxes(), box('cdef', Buffer.alloc(6)), codestreamBox]), MAX_PIXELS).remapsComponents).toBe(false);
  });

  it('asks for more bytes until the prefix holds the header, then reads the same header', async () => {
    for (const path of Object.values(samples)) {
      const file = await readFile(path);
      const whole = jp2Header(file, MAX_PIXELS);
      let length = 16;
      let read = readJp2Header(file.subarray(0, length), { maxPixels: MAX_PIXELS, fileSize: file.length });
      let rounds = 0;
      while ('needBytes' in read) {
        expect(read.needBytes).toBeGreaterThan(length);
        expect(read.needBytes).toBeLessThanOrEqual(whole.headerLength);
        length = read.needBytes;
        read = readJp2Header(file.subarray(0, length), { maxPixels: MAX_PIXELS, fileSize: file.length });
        rounds += 1;
      }
      expect(read.header).toEqual(whole);
      expect(rounds).toBeGreaterThan(0);
      expect(whole.headerLength).toBeLessThan(JP2_HEADER_PREFIX_BYTES);
      expect(readJp2Header(file.subarray(0, JP2_HEADER_PREFIX_BYTES), { maxPixels: MAX_PIXELS, fileSize: file.length })).toEqual({ header: whole });
    }
  });

  it('never throws anything but a 4xx IiifError, whatever byte of the header is damaged', async () => {
    const file = await readFile(samples['tiled.jp2']!);
    const { headerLength } = jp2Header(file, MAX_PIXELS);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: headerLength - 1 }), fc.integer({ min: 0, max: 255 }), (at, value) => {
        const damaged = Buffer.from(file);
        damaged[at] = value;
        try {
          jp2Header(damaged, MAX_PIXELS);
        } catch (error) {
          expect(error).toBeInstanceOf(IiifError);
          expect((error as IiifError).statusCode).toBeGreaterThanOrEqual(400);
          expect((error as IiifError).statusCode).toBeLessThan(500);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses every truncation of the header as undecodable', async () => {
    const file = await readFile(samples['tiled.jp2']!);
    const { headerLength } = jp2Header(file, MAX_PIXELS);
    for (let length = 0; length < headerLength; length++) {
      expect(refusal(() => jp2Header(file.subarray(0, length), MAX_PIXELS)).code).toBe('IIIF_UNDECODABLE_SOURCE');
    }
  });
});

describe('levelSize', () => {
  const header = (x0: number, width: number) => ({ x0, y0: x0, width, height: width }) as Jp2Header;

  it('halves with rounding up, on the reference grid when the image is offset (ISO 15444-1 B.5)', () => {
    expect(levelSize(header(0, 1200), 0)).toEqual({ width: 1200, height: 1200 });
    expect(levelSize(header(0, 1201), 1)).toEqual({ width: 601, height: 601 });
    expect(levelSize(header(0, 1200), 6)).toEqual({ width: 19, height: 19 });
    // Columns 37..1236: level 1 holds ceil(1237/2) - ceil(37/2) = 619 - 19 = 600.
    expect(levelSize(header(37, 1200), 1)).toEqual({ width: 600, height: 600 });
    expect(levelSize(header(3, 2), 1)).toEqual({ width: 1, height: 1 });
  });
});

describe('hostile JPEG 2000 headers', () => {
  const j2k = (...segments: Buffer[]) => codestream(siz(), ...segments);
  const cases: Array<[string, number, string, Buffer]> = [
    ['a lying SIZ: 60000×60000 pixels in a few bytes', 413, '60000×60000 pixels', codestream(siz({ xsiz: 60_000, ysiz: 60_000, tileWidth: 60_000, tileHeight: 60_000 }), cod(), qcd())],
    ['a zero-width frame', 422, 'no pixels', codestream(siz({ xsiz: 0 }), cod(), qcd())],
    ['a zero-height frame (offset equal to the size)', 422, 'no pixels', codestream(siz({ ysiz: 48, y0: 48, tileY0: 0 }), cod(), qcd())],
    ['zero-size tiles', 422, 'tiles have no size', codestream(siz({ tileWidth: 0 }), cod(), qcd())],
    ['a tile grid that misses the image', 422, 'tile grid misses', codestream(siz({ x0: 10, tileX0: 0, tileWidth: 5, xsiz: 64 }), cod(), qcd())],
    ['65,536 one-pixel tiles (beyond the standard)', 422, 'claims 65536 tiles', codestream(siz({ xsiz: 256, ysiz: 256, tileWidth: 1, tileHeight: 1 }), cod(), qcd())],
    ['40,000 tiles (legal, but OpenJPEG would set up 340 MB for them)', 413, 'cut into 40000 tiles', codestream(siz({ xsiz: 200, ysiz: 200, tileWidth: 1, tileHeight: 1 }), cod(), qcd())],
    ['coordinates beyond 2^31', 422, 'too large for the decoder', codestream(siz({ xsiz: 0xffff_ffff, x0: 0xffff_fff0, tileX0: 0xffff_fff0, tileWidth: 64 }), cod(), qcd())],
    ['no components', 422, 'no components', codestream(siz({ count: 0, components: [] }), cod(), qcd())],
    ['five components', 422, '5 components', codestream(siz({ count: 5 }), cod(), qcd())],
    ['16,384 components (the legal maximum), 16 written', 422, '16384 components', codestream(siz({ count: 16_384 }), cod(), qcd())],
    ['65,535 components', 422, 'claims 65535 components', codestream(siz({ count: 65_535 }), cod(), qcd())],
    ['a SIZ length that disagrees with its component count', 422, 'SIZ segment length', codestream(siz({ count: 2, components: [{ ssiz: 7, dx: 1, dy: 1 }] }), cod(), qcd())],
    ['39-bit samples', 422, '39 bits', codestream(siz({ components: [{ ssiz: 38, dx: 1, dy: 1 }] }), cod(), qcd())],
    ['zero sample spacing', 422, 'no sample spacing', codestream(siz({ components: [{ ssiz: 7, dx: 0, dy: 1 }] }), cod(), qcd())],
    ['a subsampled first component', 422, 'first component is subsampled', codestream(siz({ components: [{ ssiz: 7, dx: 2, dy: 2 }] }), cod(), qcd())],
    // Each legal, and each would make OpenJPEG set up gigabytes for one tile before decoding it.
    ['16000×16000 in 4×4 code-blocks (6 GB in OpenJPEG)', 413, 'blocks too small', codestream(siz({ xsiz: 16_000, ysiz: 16_000, tileWidth: 16_000, tileHeight: 16_000 }), cod(5, { block: 0 }), qcd())],
    ['4000×4000 in 2×2 precincts (8.7 GB in OpenJPEG)', 413, 'blocks too small', codestream(siz({ xsiz: 4000, ysiz: 4000, tileWidth: 4000, tileHeight: 4000 }), cod(5, { precincts: Array(6).fill(0x11) }), qcd())],
    ['1-sample precincts above the lowest resolution', 422, 'precincts are smaller', j2k(cod(5, { precincts: [0, 0, 0, 0, 0, 0] }), qcd())],
    ['no COD', 422, 'no coding style', j2k(qcd())],
    ['33 decomposition levels', 422, '33 decomposition levels', j2k(cod(33), qcd())],
    ['a COD too short for its precincts', 422, 'too short for its precincts', j2k(segment(0xff52, Buffer.from([1, 0, 0, 1, 0, 5, 4, 4, 0, 1, 0x77])), qcd())],
    ['an unknown progression order', 422, 'progression order is unknown', j2k(segment(0xff52, Buffer.from([0, 9, 0, 1, 0, 5, 4, 4, 0, 1])), qcd())],
    ['a segment length of 0', 422, 'impossible length', j2k(cod(), Buffer.from([0xff, 0x5c, 0, 0]))],
    ['a segment running past the end', 422, 'ends inside its header', Buffer.concat([Buffer.from([0xff, 0x4f]), siz(), Buffer.from([0xff, 0x52, 0xff, 0xff, 0, 0])])],
    ['a missing SIZ', 422, 'SOC and SIZ', Buffer.concat([Buffer.from([0xff, 0x4f]), cod(), qcd()])],
    ['a JP2 box length of 4', 422, 'impossible length', Buffer.concat([jp2Boxes(), box('jp2c', j2k(cod(), qcd()), 4)])],
    ['a JP2 box claiming 2^64-1 bytes', 422, 'box length overflows', Buffer.concat([jp2Boxes(), box('jp2c', Buffer.concat([Buffer.from('ffffffffffffffff', 'hex'), j2k(cod(), qcd())]), 1)])],
    ['a JP2 box claiming 2^40 bytes', 422, 'runs past the end', Buffer.concat([jp2Boxes(), box('jp2c', Buffer.concat([Buffer.from('0000010000000000', 'hex'), j2k(cod(), qcd())]), 1)])],
    ['a JP2 box longer than the file', 422, 'runs past the end', Buffer.concat([jp2Boxes(), box('jp2c', j2k(cod(), qcd()), 0x7fff_0000)])],
    ['a JP2 file without a codestream', 422, 'no codestream', jp2Boxes()],
    ['a JP2 file without its file type box', 422, 'file type box', Buffer.concat([jp2Boxes().subarray(0, 12), box('jp2c', j2k(cod(), qcd()))])],
    ['a JP2 header without an image header', 422, 'image header', Buffer.concat([jp2Boxes().subarray(0, 32), box('jp2h', box('colr', Buffer.alloc(7))), box('jp2c', j2k(cod(), qcd()))])],
    ['a codestream before the JP2 header', 422, 'before the JP2 header', Buffer.concat([jp2Boxes().subarray(0, 32), box('jp2c', j2k(cod(), qcd()))])],
    ['ten thousand empty boxes', 422, 'too many boxes', Buffer.concat([jp2Boxes(), Buffer.alloc(80_000, Buffer.from([0, 0, 0, 8, 0x66, 0x72, 0x65, 0x65]))])],
    ['not JPEG 2000 at all', 422, 'SOC and SIZ', Buffer.from('GIF89a and then some more bytes')],
    ['nothing', 422, 'ends inside its header', Buffer.alloc(0)],
  ];

  it.each(cases)('refuses %s with a %i, allocating nothing large', (_name, status, reason, file) => {
    const before = process.resourceUsage().maxRSS;
    const error = refusal(() => jp2Header(file, MAX_PIXELS));
    expect([error.statusCode, error.message]).toEqual([status, expect.stringContaining(reason)]);
    // kB: the peak resident size of the whole test process grew by less than 8 MB.
    expect(process.resourceUsage().maxRSS - before).toBeLessThan(8 * 1024);
  });

  it('reads a hand-built header that is valid, so the cases above fail for their one fault', () => {
    expect(jp2Header(j2k(cod(), qcd()), MAX_PIXELS)).toMatchObject({ width: 64, height: 48, levels: 5, container: 'j2k' });
    expect(jp2Header(Buffer.concat([jp2Boxes(), box('jp2c', j2k(cod(), qcd()))]), MAX_PIXELS)).toMatchObject({ container: 'jp2', codestreamOffset: jp2Boxes().length + 8 });
  });

  it('takes the smallest level count when a COC gives a component fewer levels', () => {
    const twoComponents = siz({ count: 2 });
    const coc = segment(0xff53, Buffer.from([1, 0, 2, 4, 4, 0, 1]));
    expect(jp2Header(codestream(twoComponents, cod(5), coc, qcd()), MAX_PIXELS).levels).toBe(2);
  });

  it('says how many bytes a truncated prefix needs instead of refusing it when the file is longer', () => {
    const file = Buffer.concat([jp2Boxes(), box('jp2c', j2k(cod(), qcd()))]);
    // The file type box spans bytes 12-31: its length and type are enough to find the next box.
    expect(readJp2Header(file.subarray(0, 20), { maxPixels: MAX_PIXELS, fileSize: file.length })).toEqual({ needBytes: 36 });
  });

  it('refuses a tile-part header that codes its tile in tiny blocks, and accepts ordinary ones, reading only their headers', async () => {
    const big = siz({ xsiz: 8000, ysiz: 8000, tileWidth: 4000, tileHeight: 4000 });
    const main = [big, cod(), qcd()];
    const file = (...parts: Buffer[]) => Buffer.concat([Buffer.from([0xff, 0x4f]), ...main, ...parts, Buffer.from([0xff, 0xd9])]);
    const ordinary = file(tilePart(0), tilePart(1, cod(5, { block: 3 })), tilePart(2), tilePart(3));
    await expect(checkTileParts(bufferReader(ordinary), jp2Header(ordinary, MAX_PIXELS))).resolves.toBeUndefined();
    const hostile = file(tilePart(0), tilePart(1), tilePart(2), tilePart(3, segment(0xff53, Buffer.from([0, 0, 5, 0, 0, 0, 1]))));
    const error = await asyncRefusal(checkTileParts(bufferReader(hostile), jp2Header(hostile, MAX_PIXELS)));
    expect([error.statusCode, error.message]).toEqual([413, expect.stringContaining('4000×4000 tiles')]);
    const damaged = file(tilePart(0, Buffer.from([0xff, 0x52, 0, 1])));
    expect((await asyncRefusal(checkTileParts(bufferReader(damaged), jp2Header(damaged, MAX_PIXELS)))).statusCode).toBe(422);
    // A tile-part header longer than the first read is read further.
    const long = file(tilePart(0, segment(0xff64, Buffer.alloc(6000, 0x41))), tilePart(1, segment(0xff64, Buffer.alloc(6000, 0x41)), segment(0xff53, Buffer.from([0, 0, 5, 0, 0, 0, 1]))));
    expect((await asyncRefusal(checkTileParts(bufferReader(long), jp2Header(long, MAX_PIXELS)))).statusCode).toBe(413);
  });
});
