/**
 * Crafted files: legal images that are cheap to store and expensive to decode, for the
 * hardening tests and the hostile-load script. Made with Debian's jpegtran
 * (scripts/system/imaging-tools.sh).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';

const run = promisify(execFile);

/** libjpeg's limit on successive-approximation bits for 8-bit samples (MAX_AH_AL). */
const MAX_AL = 10;
/** jpegtran reads at most this many scans from one script. */
const SCRIPT_SCANS = 100;

/** A first scan of `components` for coefficients `band` with Al = MAX_AL, then one refinement per bit. */
function bandScans(components: string, band: string): string[] {
  const lines = [`${components}: ${band}, 0, ${MAX_AL};`];
  for (let al = MAX_AL; al > 0; al--) lines.push(`${components}: ${band}, ${al}, ${al - 1};`);
  return lines;
}

/**
 * A legal progressive JPEG of width×height with as many scans as libjpeg allows for three
 * components: every coefficient of every component in its own band, refined bit by bit
 * (11 DC scans + 3 × 63 × 11 AC scans = 2,090). Each scan makes a decoder run over the whole
 * image, so the file decodes many times slower than its size suggests.
 *
 * jpegtran takes at most 100 scans per script, so the file is spliced: every script starts with
 * the DC scans and carries a few bands, and a scan's bytes depend only on the coefficients and
 * its own band's earlier scans, so the pieces fit together into one valid progression.
 */
export async function manyScanJpeg(width: number, height: number): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'iiif-crafted-'));
  try {
    const base = join(dir, 'base.jpg');
    await sharp({ create: { width, height, channels: 3, background: '#808080', noise: { type: 'gaussian', mean: 128, sigma: 50 } } })
      .blur(6)
      .jpeg({ quality: 75 })
      .toFile(base);
    const dc = bandScans('0,1,2', '0-0');
    const bands: string[][] = [];
    for (let component = 0; component < 3; component++) for (let k = 1; k < 64; k++) bands.push(bandScans(String(component), `${k}-${k}`));
    const perScript = Math.floor((SCRIPT_SCANS - dc.length) / (MAX_AL + 1));
    let header: Buffer | undefined;
    const scans: Buffer[] = [];
    for (let first = 0; first < bands.length; first += perScript) {
      const script = join(dir, `scans-${first}.txt`);
      await writeFile(script, [...dc, ...bands.slice(first, first + perScript).flat()].join('\n'));
      const { stdout } = await run('jpegtran', ['-scans', script, base], { encoding: 'buffer', maxBuffer: 1 << 30 });
      const pieces = splitScans(stdout);
      header ??= pieces.header;
      scans.push(...pieces.scans.slice(first === 0 ? 0 : dc.length));
    }
    return Buffer.concat([header!, ...scans, Buffer.from([0xff, 0xd9])]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** A JPEG cut into what precedes the first scan (without Huffman tables) and each scan with the tables before it. */
function splitScans(jpeg: Buffer): { header: Buffer; scans: Buffer[] } {
  const header: Buffer[] = [jpeg.subarray(0, 2)];
  const scans: Buffer[] = [];
  let tables: Buffer[] = [];
  let i = 2;
  while (i < jpeg.length && jpeg[i + 1] !== 0xd9) {
    const code = jpeg[i + 1]!;
    const end = i + 2 + jpeg.readUInt16BE(i + 2);
    if (code === 0xda) {
      // Entropy-coded data runs to the next marker that is neither a stuffed 0xFF nor a restart.
      let next = end;
      while (!(jpeg[next] === 0xff && jpeg[next + 1] !== 0 && !(jpeg[next + 1]! >= 0xd0 && jpeg[next + 1]! <= 0xd7))) next++;
      scans.push(Buffer.concat([...tables, jpeg.subarray(i, next)]));
      tables = [];
      i = next;
      continue;
    }
    if (code === 0xc4 || scans.length > 0) tables.push(jpeg.subarray(i, end));
    else header.push(jpeg.subarray(i, end));
    i = end;
  }
  return { header: Buffer.concat(header), scans };
}
