/**
 * `npm run bench`: drives the server with autocannon on reproducible workloads and writes
 * bench/results/<date>.json plus bench/results/latest.md. Each workload gets a fresh server
 * process (cold caches), so workloads cannot help each other; CPU and memory are read from
 * /proc for the server process only, so "req/s per core" is the server's own efficiency.
 *
 *   npm run bench                    all workloads
 *   npm run bench -- W1 W5           some of them
 *   BENCH_TARGET=http://host:port npm run bench -- W1   against a running server or load balancer
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../src/paths.js';
import { BENCH_HEIGHT, BENCH_WIDTH, ensureBenchImages, FOREIGN_PYRAMIDS, PLAIN_JPEGS, PYRAMIDS } from './images.js';
import { loadInChild } from './load-process.js';
import { type Latency, sampleLatency } from './probe.js';
import { cpuSeconds, startServer, watchPeakRss, type RunningServer } from './server-process.js';
import { shuffled, tilePaths } from './workloads.js';

export interface Workload {
  name: string;
  description: string;
  paths: string[];
  /** Run the whole list once (each URL about once) or cycle it for a fixed time. */
  stop: { amount: number } | { seconds: number };
  connections: number[];
  env?: Record<string, string>;
  /**
   * Every connection cycles the whole list, as requests the load generator builds once. For
   * workloads answered from the servers' caches: handing out the next URL through a callback per
   * request costs autocannon more than such a request costs the server, and a server left
   * waiting on its load generator handles each request alone (a wake-up and syscalls each)
   * instead of in batches, which measures the load generator, not the server. Not for
   * workloads whose URLs must each be asked about once, or whose identical requests in step
   * would be merged by single-flight (W4).
   */
  prebuilt?: boolean;
}

export interface Measurement {
  workload: string;
  description: string;
  connections: number;
  requests: number;
  seconds: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p97_5: number; p99: number; max: number };
  errors: number;
  non2xx: number;
  status503: number;
  peakRssMiB: number;
  coresUsed: number;
  requestsPerSecondPerCore: number;
  /** The tiny request sampled during the load (probe.ts): our /health, iipsrv's FastCGI endpoint. */
  probe: Latency;
  /** Time for the first info.json of each image before measuring: W2's first-touch conversion. */
  warmupSeconds: number;
}

const image = { width: BENCH_WIDTH, height: BENCH_HEIGHT };

/** How a server spells its IIIF URLs: our /iiif/3 and /iiif/2, or iipsrv's /iiif (2.1 only). */
export interface Dialect {
  prefix: string;
  syntax: 2 | 3;
  /** The images W2 reads: our plain JPEGs, or for a server that cannot read JPEG the pyramids. */
  plainImages: string[];
}

export const OURS_V3: Dialect = { prefix: '/iiif/3', syntax: 3, plainImages: PLAIN_JPEGS };

export function workloads(dialect: Dialect = OURS_V3): Workload[] {
  const tiles = (name: string, tileSize = 256) => tilePaths(image, tileSize, dialect.syntax).map((path) => `${dialect.prefix}/${name}/${path}`);
  const cold = (names: string[], tileSize?: number) => shuffled(names.flatMap((name) => tiles(name, tileSize)));
  const w6 = cold(FOREIGN_PYRAMIDS.vipsRgb);
  const w7 = cold(FOREIGN_PYRAMIDS.magick);
  const w8 = cold(FOREIGN_PYRAMIDS.vipsDefault);
  const w9 = cold(FOREIGN_PYRAMIDS.vipsRgb, 300);
  const url = (name: string, rest: string) => `${dialect.prefix}/${name}/${rest}`;
  const w1 = shuffled(PYRAMIDS.flatMap((name) => tiles(name)));
  const w2 = shuffled(dialect.plainImages.flatMap((name) => tiles(name)));
  const hot = tiles(PYRAMIDS[0]!).slice(-40); // the low-resolution levels every viewer opens with
  return [
    { name: 'W1', description: `deep-zoom tiles, ${w1.length} distinct URLs over ${PYRAMIDS.length} pyramidal TIFFs, each once`, paths: w1, stop: { amount: w1.length }, connections: [8, 32, 64] },
    { name: 'W2', description: `the same tiles against ${dialect.plainImages.length} plain 12000×9000 JPEGs, each once, after their first touch`, paths: w2, stop: { amount: w2.length }, connections: [8, 32] },
    { name: 'W3', description: 'info.json', paths: [...PYRAMIDS, ...dialect.plainImages].map((name) => url(name, 'info.json')), stop: { seconds: 10 }, connections: [32], prebuilt: true },
    {
      name: 'W4',
      description: 'thumbnails full/!200,200/0/default.jpg, rendered every time (result cache off)',
      paths: PYRAMIDS.map((name) => url(name, 'full/!200,200/0/default.jpg')),
      stop: { seconds: 10 },
      connections: [8],
      env: { IIIF_RESULT_CACHE_BYTES: '0' },
    },
    { name: 'W5', description: `hot tiles: ${hot.length} tiles requested over and over`, paths: hot, stop: { seconds: 10 }, connections: [8, 32], prebuilt: true },
    // Pyramids this project did not make (see FOREIGN_PYRAMIDS), cold: each tile once.
    { name: 'W6', description: `deep-zoom tiles, ${w6.length} URLs over 3 pyramids by Debian's vips 8.14 (256-px RGB JPEG tiles, no Adobe marker), each once`, paths: w6, stop: { amount: w6.length }, connections: [8, 32] },
    { name: 'W7', description: `deep-zoom tiles, ${w7.length} URLs over 3 pyramids by ImageMagick's ptif: writer (256-px RGB JPEG tiles), each once`, paths: w7, stop: { amount: w7.length }, connections: [8, 32] },
    { name: 'W8', description: `deep-zoom tiles, ${w8.length} URLs over 3 pyramids by Debian's vips 8.14 defaults (128-px YCbCr tiles: each 256-px tile spans four), each once`, paths: w8, stop: { amount: w8.length }, connections: [8, 32] },
    { name: 'W9', description: `300-px viewer tiles, ${w9.length} URLs over the pyramids of W6 (256-px stored tiles: regions across tiles, decoded unless they start on a JPEG block), each once`, paths: w9, stop: { amount: w9.length }, connections: [8, 32] },
  ];
}

/** One autocannon run; CPU and peak RSS are those of the process trees of `pids` (the server's, or a fleet's), added up. */
export async function measure(pids: number[], url: string, workload: Workload, connections: number, probePath = '/health'): Promise<Omit<Measurement, 'warmupSeconds'>> {
  const watches = pids.map((pid) => watchPeakRss(pid));
  const probe = sampleLatency(`${url}${probePath}`);
  const cpuTotal = async () => (await Promise.all(pids.map((pid) => cpuSeconds(pid)))).reduce((a, b) => a + b, 0);
  const cpuBefore = await cpuTotal();
  const started = process.hrtime.bigint();
  const result = await loadInChild({
    url,
    connections,
    timeout: 30,
    // A run of a fixed number of requests ends on a sample tick (1 s by default), which would
    // round the measured time up to a whole second.
    sampleInt: 20,
    ...('amount' in workload.stop ? { amount: workload.stop.amount } : { duration: workload.stop.seconds }),
    paths: workload.paths,
    prebuilt: workload.prebuilt,
  });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const probed = await probe.stop();
  const cpu = pids.length > 0 ? (await cpuTotal()) - cpuBefore : NaN;
  const peak = pids.length > 0 ? (await Promise.all(watches.map((watch) => watch.stop()))).reduce((a, b) => a + b, 0) : NaN;
  const coresUsed = cpu / seconds;
  const requestsPerSecond = result.requests.total / seconds;
  return {
    workload: workload.name,
    description: workload.description,
    connections,
    requests: result.requests.total,
    seconds: round(seconds),
    requestsPerSecond: round(requestsPerSecond),
    latencyMs: { p50: result.latency.p50, p97_5: result.latency.p97_5, p99: result.latency.p99, max: result.latency.max },
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
    status503: result.statusCodeStats['503']?.count ?? 0,
    peakRssMiB: round(peak / 2 ** 20),
    coresUsed: round(coresUsed),
    requestsPerSecondPerCore: round(requestsPerSecond / coresUsed),
    probe: probed,
  };
}

const round = (value: number) => Math.round(value * 10) / 10;

/**
 * Starts our compiled server as its own process over the benchmark images, with an empty
 * pyramid folder, so every run pays (and reports) its own first-touch conversions.
 */
export async function startOurs(dataDir: string, env: Record<string, string> = {}): Promise<RunningServer> {
  const pyramidDir = await mkdtemp(join(tmpdir(), 'bench-pyramids-'));
  const server = await startServer(process.execPath, [join(projectRoot(), 'dist', 'src', 'main.js')], { IIIF_FILE_ROOT: dataDir, IIIF_PYRAMID_DIR: pyramidDir, ...env });
  return {
    ...server,
    stop: async () => {
      await server.stop();
      await rm(pyramidDir, { recursive: true, force: true });
    },
  };
}

/**
 * Seconds of requests before measuring, so a JIT-compiled server is measured warm, as it runs in
 * production: 2,000 requests were not enough here (the next 2,000 still cost half as much CPU).
 */
const WARM_UP_SECONDS = 4;

/**
 * Warms a server's code paths on the workload's own images without warming its caches for the
 * measured URLs: the same requests with quality `color`, which reads the same stored tiles but
 * is a different canonical request (a different result-cache key, a different response). Only
 * for image workloads whose URLs ask for `default`.
 */
async function warmUp(url: string, workload: Workload, connections: number): Promise<void> {
  const paths = shuffled(workload.paths.filter((path) => path.endsWith('/default.jpg')), 7).map((path) => path.replace(/\/default\.jpg$/, '/color.jpg'));
  if (paths.length === 0) return;
  const result = await loadInChild({ url, connections, duration: WARM_UP_SECONDS, timeout: 30, paths, prebuilt: workload.prebuilt });
  if (result.non2xx > 0 || result.errors > 0) throw new Error(`warm-up of ${workload.name} failed: ${result.non2xx} non-2xx, ${result.errors} errors`);
}

/**
 * Runs one measurement against a fresh server (or a given URL), after warming what a real
 * first visit warms: each image's info.json.
 */
export async function runWorkload(workload: Workload, connections: number, start: (() => Promise<RunningServer>) | string, probePath = '/health'): Promise<Measurement> {
  const server = typeof start === 'string' ? undefined : await start();
  const url = typeof start === 'string' ? start : server!.url;
  try {
    const infos = new Set(workload.paths.map((path) => path.split('/').slice(0, -4).join('/')).filter((base) => base.split('/').length > 3));
    const warming = process.hrtime.bigint();
    for (const base of infos) await fetch(`${url}${base}/info.json`);
    const warmupSeconds = round(Number(process.hrtime.bigint() - warming) / 1e9);
    await warmUp(url, workload, connections);
    return { ...(await measure(server ? [server.pid] : [], url, workload, connections, probePath)), warmupSeconds };
  } finally {
    await server?.stop();
  }
}

export function describeMeasurement(m: Measurement): string {
  return `${m.workload} c=${m.connections}: ${m.requestsPerSecond} req/s, p99 ${m.latencyMs.p99} ms, ${m.coresUsed} cores, ${m.requestsPerSecondPerCore} req/s/core, peak ${m.peakRssMiB} MiB, errors ${m.errors}, non-2xx ${m.non2xx}, probe p99 ${m.probe.p99Ms} max ${m.probe.maxMs} ms`;
}

export function markdownTable(measurements: Measurement[]): string {
  const header = '| workload | conns | requests | req/s | p50 ms | p97.5 ms | p99 ms | errors | non-2xx | peak RSS MiB | cores used | req/s per core | /health p99 / max ms | warm-up s |';
  const rows = measurements.map((m) =>
    `| ${m.workload} | ${m.connections} | ${m.requests} | ${m.requestsPerSecond} | ${m.latencyMs.p50} | ${m.latencyMs.p97_5} | ${m.latencyMs.p99} | ${m.errors} | ${m.non2xx} | ${m.peakRssMiB} | ${m.coresUsed} | ${m.requestsPerSecondPerCore} | ${m.probe.p99Ms} / ${m.probe.maxMs} | ${m.warmupSeconds} |`,
  );
  return [header, header.replace(/[^|]+/g, '---'), ...rows].join('\n');
}

export function machine(): string {
  return `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`;
}

export async function writeReport(name: string, title: string, body: object, markdown: string, load = 'autocannon on loopback, same machine'): Promise<void> {
  const resultsDir = join(projectRoot(), 'bench', 'results');
  await mkdir(resultsDir, { recursive: true });
  const when = new Date().toISOString();
  await writeFile(join(resultsDir, `${name}-${when.replace(/[:.]/g, '-')}.json`), JSON.stringify({ date: when, machine: machine(), ...body }, null, 2));
  const text = `# ${title} ${when}\n\nMachine: ${machine()}. Load: ${load}.\n\n${markdown}\n`;
  await writeFile(join(resultsDir, `${name}-latest.md`), text);
  console.log(`\n${text}`);
}

export const benchDataDir = (): string => join(projectRoot(), 'bench', 'data');

/** Runs the named workloads (all when none are named) and writes the report. */
export async function runBenchmarks(names: string[]): Promise<void> {
  const chosen = new Set(names);
  const unknown = names.filter((name) => !workloads().some((w) => w.name === name));
  if (unknown.length > 0) throw new Error(`unknown workload ${unknown.join(', ')}; choose from ${workloads().map((w) => w.name).join(', ')}`);
  const target = process.env.BENCH_TARGET;
  const dataDir = await ensureBenchImages(benchDataDir(), (line) => console.log(line));
  const measurements: Measurement[] = [];
  for (const workload of workloads().filter((w) => chosen.size === 0 || chosen.has(w.name))) {
    for (const connections of workload.connections) {
      const m = await runWorkload(workload, connections, target ?? (() => startOurs(dataDir, workload.env)));
      console.log(describeMeasurement(m));
      measurements.push(m);
    }
  }
  const targetText = target ?? 'a fresh server process per workload';
  await writeReport('bench', 'Benchmark', { target: targetText, measurements }, `Target: ${targetText}.\n\n${markdownTable(measurements)}`);
}

if (process.argv[1]?.endsWith('run.js')) {
  runBenchmarks(process.argv.slice(2)).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
}
