/**
 * What native JPEG 2000 costs (`npm run bench:jp2`): reading the header for info.json, and the
 * CPU one 256×256 tile takes to decode at full resolution and at reduce 3, with the OpenJPEG
 * addon, one decode at a time: with a decoder of its own per tile, and with the decoders the
 * server keeps open between tiles (src/image/jp2/pool.ts; the first tile of each level opens one). The images are 12000×9000 photograph-like JP2s (bench/images.ts
 * texture) encoded once into bench/data/ with Debian's opj_compress the way archives write them:
 * 7 levels, RPCL, 256×256 precincts, 4 quality layers, 9/7 wavelet at 8:1; untiled, untiled
 * with packet-length markers (PLT), and in 1024×1024 tiles.
 */
import { readFile } from 'node:fs/promises';
import { loadConfig } from '../src/config.js';
import { JP2_HEADER_PREFIX_BYTES, jp2Header, levelSize, readJp2Header } from '../src/image/jp2/codestream.js';
import { decodeJp2, jp2UnavailableReason, openJpegVersion } from '../src/image/jp2/decoder.js';
import { Jp2Decoders } from '../src/image/jp2/pool.js';
import { bufferReader } from '../src/source/range-reader.js';
import { ARCHIVAL_JP2, ensureJp2, JP2_UNTILED } from './images.js';
import { benchDataDir, machine } from './run.js';

const FILES: Array<[string, string[]]> = [
  [JP2_UNTILED, ARCHIVAL_JP2],
  ['jp2-untiled-plt.jp2', [...ARCHIVAL_JP2, '-PLT']],
  ['jp2-tiled-1024.jp2', [...ARCHIVAL_JP2, '-t', '1024,1024']],
];
const TILES_PER_LEVEL = 16;
const HEADER_ROUNDS = 2000;
const MAX_PIXELS = 268_402_689;

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;
const percentile90 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length * 0.9)]!;
const cpuMs = (since: NodeJS.CpuUsage) => {
  const used = process.cpuUsage(since);
  return (used.user + used.system) / 1000;
};

/** Microseconds to read the header from the first 64 KB, as info.json would. */
function headerMicros(file: Buffer): number {
  const prefix = file.subarray(0, JP2_HEADER_PREFIX_BYTES);
  const times: number[] = [];
  for (let i = 0; i < HEADER_ROUNDS; i++) {
    const start = process.hrtime.bigint();
    readJp2Header(prefix, { maxPixels: MAX_PIXELS, fileSize: file.length });
    times.push(Number(process.hrtime.bigint() - start) / 1000);
  }
  return median(times);
}

/**
 * CPU and wall ms per 256×256 tile of one level, over tiles spread across it, each with a decoder
 * of its own or with kept ones, each decode on `threads` OpenJPEG threads.
 */
async function tileCost(path: string, file: Buffer, reduce: number, threads: number, kept: Jp2Decoders | undefined) {
  const header = jp2Header(file, MAX_PIXELS);
  const level = levelSize(header, reduce);
  const across = Math.floor(level.width / 256);
  const down = Math.floor(level.height / 256);
  const source = { key: path, header, reader: bufferReader(file), whole: async () => path };
  const cpu: number[] = [];
  const wall: number[] = [];
  for (let i = 0; i < TILES_PER_LEVEL; i++) {
    // A diagonal walk over the level's whole tiles, so near and far ends of the file both count.
    const column = Math.floor((i * across) / TILES_PER_LEVEL);
    const row = (i * 7) % down;
    const request = { reduce, region: { x: column * 256, y: row * 256, width: 256, height: 256 }, maxPixels: 65_536, maxSourcePixels: MAX_PIXELS };
    const since = process.cpuUsage();
    const start = performance.now();
    await (kept ? kept.decode(source, request) : decodeJp2(file, request, threads));
    wall.push(performance.now() - start);
    cpu.push(cpuMs(since));
  }
  return { cpuMedian: median(cpu), cpuP90: percentile90(cpu), wallMedian: median(wall) };
}

async function main(): Promise<void> {
  const unavailable = jp2UnavailableReason();
  if (unavailable) throw new Error(unavailable);
  // One thread, and the server's setting (IIIF_JP2_DECODE_THREADS) when it differs.
  const threadCounts = [...new Set([1, loadConfig().jp2DecodeThreads])];
  console.log(`${machine()}, OpenJPEG ${openJpegVersion()}, one decode at a time`);
  console.log('| file | size MB | header µs (64 KB prefix) | reduce | threads | decoder | CPU ms/tile median | p90 | wall ms median |');
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const [name, args] of FILES) {
    const path = await ensureJp2(benchDataDir(), name, args, (line) => console.log(line));
    const file = await readFile(path);
    const header = headerMicros(file).toFixed(1);
    for (const reduce of [0, 3]) {
      for (const threads of threadCounts) {
        const kept = new Jp2Decoders(2 ** 30, { threads });
        for (const [decoder, pool] of [['own', undefined], ['kept', kept]] as const) {
          const cost = await tileCost(path, file, reduce, threads, pool);
          const size = (file.length / 2 ** 20).toFixed(1);
          console.log(
            `| ${name} | ${size} | ${header} | ${reduce} | ${threads} | ${decoder} | ${cost.cpuMedian.toFixed(1)} | ${cost.cpuP90.toFixed(1)} | ${cost.wallMedian.toFixed(1)} |`,
          );
        }
        kept.clear();
      }
    }
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
