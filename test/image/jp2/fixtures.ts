/**
 * JPEG 2000 test files: photograph-like images encoded with Debian's opj_compress, what opj_dump
 * and opj_decompress say about them (scripts/system/openjpeg.sh installs the tools), and
 * hand-built codestream headers with any values for the hostile cases.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';

const run = promisify(execFile);

/** Smooth colour fields under fine grain, so every code-block has real detail. */
export async function photoPng(width: number, height: number, channels: 1 | 2 | 3 | 4, depth: 8 | 16 = 8): Promise<Buffer> {
  const fields = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const v = Math.sin(x / 37) + Math.sin(y / 23) + Math.cos(Math.hypot(x - width / 3, y - height / 2) / 41);
      fields.set([128 + 90 * Math.sin(v * 1.3), 128 + 90 * Math.sin(v + 2), 128 + 90 * Math.sin(v * 0.7 + 4)], (y * width + x) * 3);
    }
  }
  const grain = await sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 40 } } })
    .blur(0.8)
    .raw()
    .toBuffer();
  for (let i = 0; i < fields.length; i++) fields[i] = Math.max(0, Math.min(255, fields[i]! + ((grain[i]! - 128) >> 1)));
  let image = sharp(fields, { raw: { width, height, channels: 3 } });
  if (channels <= 2) image = image.toColourspace('b-w');
  // The alpha channel is the red field, so it varies like everything else.
  if (channels === 2 || channels === 4) image = image.joinChannel(await sharp(fields, { raw: { width, height, channels: 3 } }).extractChannel(0).toBuffer(), { raw: { width, height, channels: 1 } });
  if (depth === 16) image = image.toColourspace(channels <= 2 ? 'grey16' : 'rgb16');
  return image.png().toBuffer();
}

/** Encodes `input` (written as `input.<ext>`) with opj_compress; the output's extension picks JP2 or J2K. */
export async function opjCompress(dir: string, name: string, input: { bytes: Buffer; ext: string }, args: string[]): Promise<string> {
  const source = join(dir, `${name}.input.${input.ext}`);
  const output = join(dir, name);
  await writeFile(source, input.bytes);
  await run('opj_compress', ['-i', source, '-o', output, ...args]);
  return output;
}

export interface OpjDump {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
  components: Array<{ dx: number; dy: number; prec: number; sgnd: boolean; numresolutions: number; cblkw: number; cblkh: number; precincts: number[][] }>;
  tile: { x0: number; y0: number; width: number; height: number; across: number; down: number };
  progression: number;
  layers: number;
}

/** opj_dump's account of a file's header. */
export async function opjDump(path: string): Promise<OpjDump> {
  const { stdout } = await run('opj_dump', ['-i', path]);
  const numbers = (pattern: RegExp) => [...stdout.matchAll(pattern)].map((match) => match.slice(1).map(Number));
  const first = (pattern: RegExp) => numbers(pattern)[0]!;
  const [x0, y0] = first(/\bx0=(\d+), y0=(\d+)/g);
  const [x1, y1] = first(/\bx1=(\d+), y1=(\d+)/g);
  const spacing = numbers(/\bdx=(\d+), dy=(\d+)/g);
  const precision = numbers(/\bprec=(\d+)/g);
  const signed = numbers(/\bsgnd=(\d+)/g);
  const resolutions = numbers(/\bnumresolutions=(\d+)/g);
  const blocks = numbers(/\bcblkw=2\^(\d+)\s+cblkh=2\^(\d+)/g);
  // Exponents (PPx, PPy) per resolution, lowest first.
  const precincts = [...stdout.matchAll(/preccintsize \(w,h\)=((?:\(\d+,\d+\) )+)/g)].map((match) =>
    [...match[1]!.matchAll(/\((\d+),(\d+)\)/g)].map((pair) => [Number(pair[1]), Number(pair[2])]),
  );
  const [tx0, ty0] = first(/\btx0=(\d+), ty0=(\d+)/g);
  const [tdx, tdy] = first(/\btdx=(\d+), tdy=(\d+)/g);
  const [tw, th] = first(/\btw=(\d+), th=(\d+)/g);
  return {
    x0: x0!,
    y0: y0!,
    x1: x1!,
    y1: y1!,
    components: spacing.map(([dx, dy], c) => ({
      dx: dx!,
      dy: dy!,
      prec: precision[c]![0]!,
      sgnd: signed[c]![0] === 1,
      numresolutions: resolutions[c]![0]!,
      cblkw: blocks[c]![0]!,
      cblkh: blocks[c]![1]!,
      precincts: precincts[c]!,
    })),
    tile: { x0: tx0!, y0: ty0!, width: tdx!, height: tdy!, across: tw!, down: th! },
    // printf's %#x: 0x2, but a bare 0 for LRCP.
    progression: Number(/\bprg=(0x[0-9a-f]+|0)\b/.exec(stdout)![1]),
    layers: first(/\bnumlayers=(\d+)/g)[0]!,
  };
}

/**
 * opj_decompress's pixels for `-r reduce` and, when given, `-d x0,y0,x1,y1` (reference-grid
 * coordinates), read back by sharp from its PNG as they are: 8 or 16 bits, 1 to 4 channels.
 */
export async function opjDecompress(path: string, dir: string, reduce: number, area?: number[]) {
  const output = join(dir, `reference-${reduce}-${(area ?? []).join('_')}.png`);
  await run('opj_decompress', ['-i', path, '-o', output, '-r', String(reduce), ...(area ? ['-d', area.join(',')] : [])]);
  const png = await readFile(output);
  const { channels, depth } = await sharp(png).metadata();
  const wide = depth === 'ushort';
  // Without a colour space sharp would turn grey into sRGB and 16 bits into 8 on the way out.
  const space = channels <= 2 ? (wide ? 'grey16' : 'b-w') : wide ? 'rgb16' : 'srgb';
  const { data, info } = await sharp(png).toColourspace(space).raw({ depth: wide ? 'ushort' : 'uchar' }).toBuffer({ resolveWithObject: true });
  const samples = wide ? new Uint16Array(data.buffer, data.byteOffset, data.length / 2) : data;
  return { samples, width: info.width, height: info.height, channels: info.channels, depth: wide ? 16 : 8 };
}

/** A marker segment: marker, length (which counts itself), body. */
export function segment(marker: number, body: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16BE(marker, 0);
  head.writeUInt16BE(body.length + 2, 2);
  return Buffer.concat([head, body]);
}

export interface SizFields {
  xsiz: number;
  ysiz: number;
  x0: number;
  y0: number;
  tileWidth: number;
  tileHeight: number;
  tileX0: number;
  tileY0: number;
  /** Csiz as written; the component entries written are `components` (all 8-bit, unsubsampled unless given). */
  count: number;
  components: Array<{ ssiz: number; dx: number; dy: number }>;
}

/** The SIZ segment with any values, including ones the standard forbids. */
export function siz(fields: Partial<SizFields> = {}): Buffer {
  const f: SizFields = { xsiz: 64, ysiz: 48, x0: 0, y0: 0, tileWidth: 64, tileHeight: 48, tileX0: 0, tileY0: 0, count: 1, components: [], ...fields };
  const components = fields.components ?? Array.from({ length: Math.min(f.count, 16) }, () => ({ ssiz: 7, dx: 1, dy: 1 }));
  const body = Buffer.alloc(36 + 3 * components.length);
  [f.xsiz, f.ysiz, f.x0, f.y0, f.tileWidth, f.tileHeight, f.tileX0, f.tileY0].forEach((value, i) => body.writeUInt32BE(value, 2 + 4 * i));
  body.writeUInt16BE(f.count, 34);
  components.forEach((c, i) => body.set([c.ssiz, c.dx, c.dy], 36 + 3 * i));
  return segment(0xff51, body);
}

/**
 * COD with `levels` decomposition levels, one layer, LRCP, 5/3 wavelet, code-blocks of
 * 2^(block + 2) samples (64 by default) and, when given, one precinct byte per resolution
 * (PPy << 4 | PPx, lowest resolution first).
 */
export function cod(levels = 5, { block = 4, precincts }: { block?: number; precincts?: number[] } = {}): Buffer {
  return segment(0xff52, Buffer.from([precincts ? 1 : 0, 0, 0, 1, 0, levels, block, block, 0, 1, ...(precincts ?? [])]));
}

/** QCD without quantisation (one exponent per sub-band), as the reversible path writes it. */
export function qcd(levels = 5): Buffer {
  return segment(0xff5c, Buffer.concat([Buffer.from([0x40]), Buffer.alloc(3 * levels + 1, 0x40)]));
}

/**
 * A codestream with the given main header segments and one empty tile-part (tile 0): a header
 * that parses (or not) followed by next to no data, like a file whose header lies about its
 * content.
 */
export function codestream(...segments: Buffer[]): Buffer {
  return Buffer.concat([Buffer.from([0xff, 0x4f]), ...segments, tilePart(0), Buffer.from([0xff, 0xd9])]);
}

/** A tile-part of `tile` with the given tile-part header segments and no data. */
export function tilePart(tile: number, ...segments: Buffer[]): Buffer {
  const body = Buffer.concat([...segments, Buffer.from([0xff, 0x93])]);
  const sot = Buffer.alloc(12);
  sot.writeUInt16BE(0xff90, 0);
  sot.writeUInt16BE(10, 2);
  sot.writeUInt16BE(tile, 4);
  sot.writeUInt32BE(12 + body.length, 6);
  sot.writeUInt8(0, 10);
  sot.writeUInt8(1, 11);
  return Buffer.concat([sot, body]);
}

/** A JP2 box: length, type, body; `length` overrides the length field (0, 1 or a lie). */
export function box(type: string, body: Buffer, length = 8 + body.length): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(length, 0);
  head.write(type, 4, 'latin1');
  return Buffer.concat([head, body]);
}

/** The boxes a JP2 file starts with: signature, file type, header (image header and colour). */
export function jp2Boxes(width = 64, height = 48, components = 1): Buffer {
  const ihdr = Buffer.alloc(14);
  ihdr.writeUInt32BE(height, 0);
  ihdr.writeUInt32BE(width, 4);
  ihdr.writeUInt16BE(components, 8);
  ihdr.set([7, 7, 0, 0], 10);
  return Buffer.concat([
    box('jP  ', Buffer.from([0x0d, 0x0a, 0x87, 0x0a])),
    box('ftyp', Buffer.from('jp2 \u0000\u0000\u0000\u0000jp2 ', 'latin1')),
    box('jp2h', Buffer.concat([box('ihdr', ihdr), box('colr', Buffer.from([1, 0, 0, 0, 0, 0, components >= 3 ? 16 : 17]))])),
  ]);
}

/** Planar samples for opj_compress's raw input (-F): 8 bits, or 16-bit big-endian words. */
function planar(planes: Array<ArrayLike<number>>, bits: number): Buffer {
  const wide = bits > 8;
  const out = Buffer.alloc(planes.reduce((sum, plane) => sum + plane.length, 0) * (wide ? 2 : 1));
  let at = 0;
  for (const plane of planes) {
    for (let i = 0; i < plane.length; i++) at = wide ? out.writeInt16BE(plane[i]!, at) : out.writeUInt8(plane[i]!, at);
  }
  return out;
}

export const SAMPLE_WIDTH = 1200;
export const SAMPLE_HEIGHT = 900;

/**
 * The sample files, each exercising one layout: name → path. Made once per test file, a few
 * seconds of opj_compress.
 */
export async function makeSamples(dir: string): Promise<Record<string, string>> {
  const [w, h] = [SAMPLE_WIDTH, SAMPLE_HEIGHT];
  const rgb = await photoPng(w, h, 3);
  const grey = await photoPng(w, h, 1);
  const greyRaw = await sharp(grey).raw().toBuffer();
  const half = await sharp(rgb).resize(w / 2, h / 2).raw().toBuffer();
  const chroma = (c: number) => Uint8Array.from({ length: (w / 2) * (h / 2) }, (_, i) => half[i * 3 + c]!);
  const png = (bytes: Buffer) => ({ bytes, ext: 'png' });
  const jobs: Array<[string, { bytes: Buffer; ext: string }, string[]]> = [
    // Archival style: 7 levels, RPCL, precincts, 4 quality layers, 256-px tiles.
    ['tiled.jp2', png(rgb), ['-n', '7', '-p', 'RPCL', '-t', '256,256', '-c', '[128,128],[128,128],[64,64]', '-r', '80,40,20,10']],
    ['untiled-grey.jp2', png(grey), ['-n', '7', '-p', 'RPCL', '-c', '[256,256],[256,256],[128,128]', '-r', '40,20,10', '-PLT']],
    ['deep.jp2', png(await photoPng(w, h, 3, 16)), ['-n', '5', '-t', '512,512']],
    // Raw codestream with the image and the tile grid off the reference grid's origin.
    ['offset.j2k', png(rgb), ['-n', '6', '-p', 'PCRL', '-t', '200,200', '-d', '37,21', '-T', '13,5', '-r', '20,5']],
    ['alpha.jp2', png(await photoPng(w, h, 4)), ['-n', '6', '-t', '300,300']],
    ['grey-alpha.jp2', png(await photoPng(w, h, 2)), ['-n', '4']],
    // YCbCr with chroma at half resolution both ways (4:2:0), as cameras and Kakadu write it.
    ['ycc420.j2k', { bytes: planar([greyRaw, chroma(1), chroma(2)], 8), ext: 'raw' }, ['-F', `${w},${h},3,8,u@1x1:2x2:2x2`, '-mct', '0', '-n', '5']],
    // Signed 12-bit samples.
    ['signed.j2k', { bytes: planar([Int16Array.from(greyRaw, (v) => v * 16 - 2048)], 12), ext: 'raw' }, ['-F', `${w},${h},1,12,s`, '-n', '5']],
  ];
  const paths: Record<string, string> = {};
  // One at a time: the machine is shared.
  for (const [name, input, args] of jobs) paths[name] = await opjCompress(dir, name, input, args);
  return paths;
}
