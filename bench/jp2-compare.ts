/**
 * The JP2 workload of `npm run bench:compare` (`-- JP2` for it alone): our server and iipsrv on
 * the same 12000×9000 archival JP2 (images.ts ensureJp2), each from a fresh process. Per server
 * and connection count: the first info.json and the first full-resolution tile, sequentially,
 * right after the process listens; then deep-zoom tiles (every tile of every level, shuffled,
 * each once) for a fixed time with no warm-up, its tiles per second per core of the server's
 * process tree, latency, errors and RSS (at start, peak, and some seconds after the load); and
 * meanwhile a tiny request sampled one at a time, to see whether decoding starves it.
 */
import { availableParallelism } from 'node:os';
import { IIPSRV_PROBE, startIipsrv } from './iipsrv.js';
import { type Latency, PROBE_GAP_MS, sampleLatency, timedGet } from './probe.js';
import { ARCHIVAL_JP2, BENCH_HEIGHT, BENCH_WIDTH, ensureJp2, JP2_UNTILED } from './images.js';
import { loadInChild } from './load-process.js';
import { startOurs, writeReport } from './run.js';
import { cpuSeconds, rssBytes, watchPeakRss, type RunningServer } from './server-process.js';
import { shuffled, tilePaths } from './workloads.js';

export const JP2_WORKLOAD = 'JP2';

const LOAD_SECONDS = Number(process.env.BENCH_JP2_SECONDS ?? 20);
const CONNECTIONS = (process.env.BENCH_JP2_CONNECTIONS ?? '8,32').split(',').map(Number);
/** How long after the load RSS is read again: time for caches and allocators to give back. */
const SETTLE_MS = 5_000;
/** Level 0 in the middle of the image: the decode reads the middle of the codestream. */
const FULL_TILE = '6144,4608,256,256/256,/0/default.jpg';

interface Contender {
  name: 'ours' | 'iipsrv' | 'iipsrv half layers';
  start(): Promise<RunningServer>;
  /** Where the JP2 is, IIIF 2.1 syntax. */
  base: string;
  /**
   * The tiny request answered from memory, sampled during the load: our /health; iipsrv has
   * none, so its FastCGI endpoint without arguments, which answers 400 with its help page
   * without opening an image, through the same busy workers.
   */
  probe: string;
}

export interface Jp2Run {
  server: Contender['name'];
  connections: number;
  /** Sequential, right after the process listens. */
  coldInfoMs: number;
  coldTileMs: number;
  coldStatuses: [number, number];
  tiles: number;
  seconds: number;
  tilesPerSecond: number;
  coresUsed: number;
  tilesPerSecondPerCore: number;
  latencyMs: { p50: number; p99: number; max: number };
  errors: number;
  non2xx: number;
  probe: Latency & { path: string };
  /** Before the first request, after the cold tile (our level-0 decoder kept open), peak, SETTLE_MS after the load. */
  rssMiB: { atStart: number; afterCold: number; peak: number; afterLoad: number };
}

const round1 = (n: number) => Math.round(n * 10) / 10;
const mib = (bytes: number) => round1(bytes / 2 ** 20);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));


async function measure(contender: Contender, connections: number): Promise<Jp2Run> {
  const server = await contender.start();
  try {
    const atStart = await rssBytes(server.pid);
    const info = await timedGet(`${server.url}${contender.base}/info.json`);
    const tile = await timedGet(`${server.url}${contender.base}/${FULL_TILE}`);
    const afterCold = await rssBytes(server.pid);
    const paths = shuffled(tilePaths({ width: BENCH_WIDTH, height: BENCH_HEIGHT }, 256, 2))
      .filter((path) => path !== FULL_TILE)
      .map((path) => `${contender.base}/${path}`);
    const probe = sampleLatency(`${server.url}${contender.probe}`);
    const rss = watchPeakRss(server.pid);
    const cpuBefore = await cpuSeconds(server.pid);
    const started = performance.now();
    const result = await loadInChild({ url: server.url, connections, duration: LOAD_SECONDS, timeout: 30, paths });
    const seconds = (performance.now() - started) / 1000;
    const cpu = (await cpuSeconds(server.pid)) - cpuBefore;
    const probed = await probe.stop();
    const peak = await rss.stop();
    await sleep(SETTLE_MS);
    const afterLoad = await rssBytes(server.pid);
    const tiles = result['2xx'];
    return {
      server: contender.name,
      connections,
      coldInfoMs: round1(info.ms),
      coldTileMs: round1(tile.ms),
      coldStatuses: [info.status, tile.status],
      tiles,
      seconds: round1(seconds),
      tilesPerSecond: round1(tiles / seconds),
      coresUsed: Math.round((cpu / seconds) * 100) / 100,
      tilesPerSecondPerCore: round1(tiles / cpu),
      latencyMs: { p50: result.latency.p50, p99: result.latency.p99, max: result.latency.max },
      errors: result.errors + result.timeouts,
      non2xx: result.non2xx,
      probe: { ...probed, path: contender.probe },
      rssMiB: { atStart: mib(atStart), afterCold: mib(afterCold), peak: mib(peak), afterLoad: mib(afterLoad) },
    };
  } finally {
    await server.stop();
  }
}

function describe(run: Jp2Run): string {
  return (
    `${run.server} c=${run.connections}: info.json ${run.coldInfoMs} ms, tile ${run.coldTileMs} ms (${run.coldStatuses.join('/')}), ` +
    `${run.tilesPerSecond} tiles/s at ${run.coresUsed} cores = ${run.tilesPerSecondPerCore}/core, p99 ${run.latencyMs.p99} ms, ` +
    `errors ${run.errors}, non-2xx ${run.non2xx}, probe p99 ${run.probe.p99Ms} max ${run.probe.maxMs} ms (${run.probe.samples}), ` +
    `RSS ${run.rssMiB.atStart} → ${run.rssMiB.afterCold} → peak ${run.rssMiB.peak} → ${run.rssMiB.afterLoad} MiB`
  );
}

function table(runs: Jp2Run[]): string {
  const header =
    '| server | conns | cold info.json ms | cold first tile ms | tiles | tiles/s | cores | tiles/s per core | p50 ms | p99 ms | max ms | errors + non-2xx | probe p99 ms | probe max ms | RSS start MiB | RSS after cold tile MiB | RSS peak MiB | RSS after MiB |';
  const rows = runs.map(
    (r) =>
      `| ${r.server} | ${r.connections} | ${r.coldInfoMs} | ${r.coldTileMs} | ${r.tiles} | ${r.tilesPerSecond} | ${r.coresUsed} | ${r.tilesPerSecondPerCore} | ${r.latencyMs.p50} | ${r.latencyMs.p99} | ${r.latencyMs.max} | ${r.errors + r.non2xx} | ${r.probe.p99Ms} | ${r.probe.maxMs} | ${r.rssMiB.atStart} | ${r.rssMiB.afterCold} | ${r.rssMiB.peak} | ${r.rssMiB.afterLoad} |`,
  );
  return [header, header.replace(/[^|]+/g, '---'), ...rows].join('\n');
}

/** Runs the JP2 workload for both servers, alternating which goes first, and writes the report. */
export async function compareJp2(dataDir: string): Promise<void> {
  await ensureJp2(dataDir, JP2_UNTILED, ARCHIVAL_JP2, (line) => console.log(line));
  const contenders: Contender[] = [
    { name: 'ours', start: () => startOurs(dataDir), base: `/iiif/2/${JP2_UNTILED}`, probe: '/health' },
    // All quality layers, as we decode them: the same pixels as opj_decompress.
    { name: 'iipsrv', start: () => startIipsrv(dataDir, availableParallelism(), { MAX_LAYERS: '-1' }), base: `/iiif/${JP2_UNTILED}`, probe: IIPSRV_PROBE },
    // iipsrv's default decodes only half the layers (less work, a coarser picture), shown for reference.
    { name: 'iipsrv half layers', start: () => startIipsrv(dataDir, availableParallelism()), base: `/iiif/${JP2_UNTILED}`, probe: IIPSRV_PROBE },
  ];
  const runs: Jp2Run[] = [];
  for (const [index, connections] of CONNECTIONS.entries()) {
    const order = index % 2 === 0 ? contenders : [...contenders].reverse();
    for (const contender of order) {
      const run = await measure(contender, connections);
      console.log(describe(run));
      runs.push(run);
    }
  }
  const notes =
    `${JP2_UNTILED}: ${BENCH_WIDTH}×${BENCH_HEIGHT}, opj_compress ${ARCHIVAL_JP2.join(' ')}. Every row a fresh server process, no warm-up: ` +
    `info.json then a full-resolution tile (${FULL_TILE}) one after the other, then ${LOAD_SECONDS} s of shuffled deep-zoom tiles (IIIF 2.1 \`w,\`), each URL once. ` +
    `Probe: a request sampled one at a time every ${PROBE_GAP_MS} ms during the load (ours /health; iipsrv its FastCGI endpoint without arguments, a 400 help page from memory). ` +
    `RSS of the process tree: before the first request, after the cold tile, peak during the load, ${SETTLE_MS / 1000} s after it. iipsrv: one FastCGI process per core under lighttpd, with \`MAX_LAYERS=-1\` (every quality layer, as ours and opj_decompress decode) and, for reference, with its default (half the layers: less work, coarser pixels).`;
  await writeReport('compare-jp2', 'JP2: ours vs iipsrv from a cold process', { loadSeconds: LOAD_SECONDS, runs }, `${notes}\n\n${table(runs)}`);
}
