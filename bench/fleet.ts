/**
 * `npm run bench:fleet`: the fleet's shared derivative store (IIIF_DERIVATIVE_PREFIX, issue 15)
 * measured as production runs it: 4 server processes behind HAProxy, S3 played by s3rver behind
 * the throttling, counting proxy (20 ms to first byte, 90 MB/s per connection).
 *
 *   a  one new 12000×9000 JPEG opened by one viewer (info.json + 60 tiles, 6 at a time):
 *      conversions across the fleet (each process's /metrics), bytes fetched from S3, statuses
 *   b  a new process joining a warm fleet (20 images with derivatives, already served by the
 *      others): its share of 200 new tiles over the 20 images, p90 and statuses
 *   c  the cold flat-source workload: 64 identifiers of flat 12000×9000 JPEGs, derivatives made
 *      beforehand by `iiif-elastic pyramid s3://… --to-derivatives`, fresh processes with empty
 *      caches; info.json of each, then 10 s of shuffled tiles of every level; our fleet with 4
 *      processes and with one per core, side by side with iipsrv on the same images as flat
 *      (single-resolution) tiled TIFFs. Tiles/s per core.
 *
 * Results go to bench/results/fleet-*.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, symlink } from 'node:fs/promises';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../src/paths.js';
import { IIPSRV_PROBE, startIipsrv } from './iipsrv.js';
import { BENCH_HEIGHT, BENCH_WIDTH, ensureTexture, PLAIN_JPEGS, PLAIN_SEEDS } from './images.js';
import { benchDataDir, describeMeasurement, measure, type Measurement, type Workload, writeReport } from './run.js';
import { fetchAll, Fleet, mb, minus, percentile, round1, S3_FROM_EC2, type Timed, viewerRun } from './s3-fleet.js';
import { BUCKET, S3Store, type Traffic } from './s3-store.js';
import { viewerSession } from './viewer-session.js';
import { shuffled, tilePaths } from './workloads.js';

const run = promisify(execFile);

const REPLICAS = 4;
const SOURCE_PREFIX = 'iiif/';
const DERIVATIVE_PREFIX = 'derivatives/';
const FLEET_ENV = { IIIF_S3_PREFIX: SOURCE_PREFIX, IIIF_DERIVATIVE_PREFIX: DERIVATIVE_PREFIX };
const SIZE = { width: BENCH_WIDTH, height: BENCH_HEIGHT };
const SESSION_TILES = 60;
const WARM_IMAGES = 20;
const JOIN_TILES = 200;
const JOIN_CONCURRENCY = 8;
const COLD_IDENTIFIERS = 64;
const COLD_SECONDS = 10;
const COLD_CONNECTIONS = 16;

/** The flat JPEGs of bench/images.ts and the same images as flat tiled TIFFs (what iipsrv reads). */
interface Sources {
  jpegs: string[];
  tiffs: string[];
}

const FLAT_TIFFS = PLAIN_JPEGS.map((name) => name.replace('plain-', 'flat-').replace(/\.jpg$/, '.tif'));
/** The cold workload's identifiers: copies of the three JPEGs, each a source version of its own. */
const coldIdentifiers = Array.from({ length: COLD_IDENTIFIERS }, (_, i) => `flat-${String(i).padStart(2, '0')}-${PLAIN_JPEGS[i % PLAIN_JPEGS.length]!}`);
const NEW_IMAGE = `new-${PLAIN_JPEGS[0]!}`;

async function ensureSources(folder: string): Promise<Sources> {
  const log = (line: string) => console.log(line);
  const jpegs: string[] = [];
  const tiffs: string[] = [];
  for (const [i, seed] of PLAIN_SEEDS.entries()) {
    jpegs.push(await ensureTexture(folder, PLAIN_JPEGS[i]!, seed, (image) => image.jpeg({ quality: 85 }), log));
    // Single resolution, 256-px JPEG tiles at the same quality: a flat source iipsrv can read.
    tiffs.push(await ensureTexture(folder, FLAT_TIFFS[i]!, seed, (image) => image.tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 85 }), log));
  }
  return { jpegs, tiffs };
}

const iiif3 = (url: string, identifier: string) => `${url}/iiif/3/${encodeURIComponent(identifier)}`;
const load = () => loadavg().map((n) => n.toFixed(2)).join(' ');

interface NewImageResult {
  sourceBytes: number;
  requests: number;
  statuses: Record<string, number>;
  wallMs: number;
  p50Ms: number;
  maxMs: number;
  /** Per process, in order r0…r3. */
  conversions: number[];
  obtained: { built: number; found: number; timeout: number };
  /** Whole-object GETs of the source (each one a full download). */
  sourceFullGets: number;
  s3: Traffic;
  budgetBytes: number;
  load: string;
}

function statusCounts(timed: Timed[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const { status } of timed) counts[status] = (counts[status] ?? 0) + 1;
  return counts;
}

/** a: one viewer opens one new flat JPEG through the fleet. */
async function newImage(store: S3Store, sourceBytes: number): Promise<NewImageResult> {
  const fleet = await Fleet.start(store, REPLICAS, FLEET_ENV);
  try {
    const before = store.traffic();
    const seenBefore = store.requests.length;
    const begun = performance.now();
    const timed = await viewerRun(iiif3(fleet.url, NEW_IMAGE), SIZE, SESSION_TILES);
    const wallMs = performance.now() - begun;
    const s3 = minus(store.traffic(), before);
    const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
    const obtained = async (result: string) => sum(await fleet.counterTotal('iiif_derivative_obtained_total', { result }));
    const times = timed.map((t) => t.ms);
    return {
      sourceBytes,
      requests: timed.length,
      statuses: statusCounts(timed),
      wallMs: round1(wallMs),
      p50Ms: round1(percentile(times, 0.5)),
      maxMs: round1(Math.max(...times)),
      conversions: await fleet.counterTotal('iiif_pyramid_builds_total', { result: 'built' }),
      obtained: { built: await obtained('built'), found: await obtained('found'), timeout: await obtained('timeout') },
      sourceFullGets: store.requests.slice(seenBefore).filter((r) => r.method === 'GET' && r.key === `${SOURCE_PREFIX}${NEW_IMAGE}` && r.range === undefined).length,
      s3,
      budgetBytes: 1.5 * sourceBytes + 10e6,
      load: load(),
    };
  } finally {
    await fleet.stop();
  }
}

interface PrebuildResult {
  seconds: number;
  summary: string;
  load: string;
}

/** The operator's flow: `iiif-elastic pyramid s3://bucket/prefix --to-derivatives`, as the one-off task runs it. */
async function prebuild(store: S3Store): Promise<PrebuildResult> {
  const cache = await mkdtemp(join(tmpdir(), 'iiif-fleet-cli-'));
  const begun = performance.now();
  try {
    const { stdout } = await run(process.execPath, [join(projectRoot(), 'dist', 'src', 'cli.js'), 'pyramid', `s3://${BUCKET}/${SOURCE_PREFIX}`, '--to-derivatives'], {
      env: {
        PATH: process.env.PATH,
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        AWS_REGION: 'us-east-1',
        IIIF_S3_ENDPOINT: store.endpoint,
        IIIF_CACHE_DIR: cache,
        IIIF_DERIVATIVE_PREFIX: DERIVATIVE_PREFIX,
        LOG_LEVEL: 'warn',
      },
      maxBuffer: 16 * 2 ** 20,
    });
    return { seconds: round1((performance.now() - begun) / 1000), summary: stdout.trim(), load: load() };
  } finally {
    await rm(cache, { recursive: true, force: true });
  }
}

interface JoinResult {
  newcomer: string;
  requests: number;
  statuses: Record<string, number>;
  newcomerRequests: number;
  newcomerStatuses: Record<string, number>;
  newcomerP50Ms: number;
  newcomerP90Ms: number;
  newcomerMaxMs: number;
  othersP90Ms: number;
  newcomerConversions: number;
  newcomerTimeouts: number;
  s3: Traffic;
  load: string;
}

/** b: a warm fleet (each of the 20 images opened by a viewer), then a fresh process joins and 200 new tiles are asked for. */
async function joinWarmFleet(store: S3Store): Promise<JoinResult> {
  const images = coldIdentifiers.slice(0, WARM_IMAGES);
  const fleet = await Fleet.start(store, REPLICAS, FLEET_ENV);
  try {
    for (const identifier of images) await viewerRun(iiif3(fleet.url, identifier), SIZE, 20);
    const { name, server } = await fleet.join();
    // Tiles the warm-up did not ask for (the same sessions, zoomed further), the images interleaved as many viewers' requests are.
    const perImage = JOIN_TILES / images.length;
    const sessions = images.map((identifier) => viewerSession({ ...SIZE, tileSize: 256, viewport: { width: 1280, height: 800 }, tiles: 20 + perImage }).slice(20).map((path) => `${encodeURIComponent(identifier)}/${path}`));
    const paths = Array.from({ length: perImage }, (_, i) => sessions.map((tiles) => tiles[i]!)).flat();
    const before = store.traffic();
    const timed = await fetchAll(`${fleet.url}/iiif/3`, paths, JOIN_CONCURRENCY);
    const mine = timed.filter((t) => t.servedBy === name);
    const others = timed.filter((t) => t.servedBy !== name);
    const index = fleet.servers.indexOf(server);
    return {
      newcomer: name,
      requests: timed.length,
      statuses: statusCounts(timed),
      newcomerRequests: mine.length,
      newcomerStatuses: statusCounts(mine),
      newcomerP50Ms: round1(percentile(mine.map((t) => t.ms), 0.5)),
      newcomerP90Ms: round1(percentile(mine.map((t) => t.ms), 0.9)),
      newcomerMaxMs: round1(Math.max(...mine.map((t) => t.ms))),
      othersP90Ms: round1(percentile(others.map((t) => t.ms), 0.9)),
      newcomerConversions: (await fleet.counterTotal('iiif_pyramid_builds_total', { result: 'built' }))[index]!,
      newcomerTimeouts: (await fleet.counterTotal('iiif_derivative_obtained_total', { result: 'timeout' }))[index]!,
      s3: minus(store.traffic(), before),
      load: load(),
    };
  } finally {
    await fleet.stop();
  }
}

interface ColdResult {
  /** Our fleet of REPLICAS processes, then of one process per core (as iipsrv runs). */
  ours: Array<{ processes: number; measurement: Measurement; conversions: number; ratioPerCore: number }>;
  iipsrv: Measurement;
  load: string;
}

/** The cold flat-source workload for one server: each identifier's info.json (as a viewer opens it), then COLD_SECONDS of tiles. */
function coldWorkload(prefix: string, names: string[]): Workload {
  const paths = shuffled(names.flatMap((name) => tilePaths(SIZE, 256, 2).map((path) => `${prefix}/${encodeURIComponent(name)}/${path}`)));
  return {
    name: 'cold-flat',
    description: `${names.length} flat 12000×9000 identifiers, every tile of every level shuffled, ${COLD_SECONDS} s`,
    paths,
    stop: { seconds: COLD_SECONDS },
    connections: [COLD_CONNECTIONS],
  };
}

async function openAll(url: string, prefix: string, names: string[]): Promise<number> {
  const begun = performance.now();
  for (const name of names) {
    const response = await fetch(`${url}${prefix}/${encodeURIComponent(name)}/info.json`);
    await response.arrayBuffer();
    if (response.status !== 200) throw new Error(`${name}: info.json answered ${response.status}`);
  }
  return round1((performance.now() - begun) / 1000);
}

/** c for our fleet of `processes` fresh processes (empty caches, derivatives in the store). */
async function coldFleet(store: S3Store, processes: number): Promise<{ measurement: Measurement; conversions: number }> {
  const fleet = await Fleet.start(store, processes, FLEET_ENV);
  try {
    const warmupSeconds = await openAll(fleet.url, '/iiif/2', coldIdentifiers);
    const pids = fleet.servers.map(({ server }) => server.child.pid!);
    const measurement = { ...(await measure(pids, fleet.url, coldWorkload('/iiif/2', coldIdentifiers), COLD_CONNECTIONS)), warmupSeconds };
    console.log(`ours ×${processes} ${describeMeasurement(measurement)}`);
    return { measurement, conversions: (await fleet.counterTotal('iiif_pyramid_builds_total', { result: 'built' })).reduce((a, b) => a + b, 0) };
  } finally {
    await fleet.stop();
  }
}

/** c: our fleet (REPLICAS processes, then one per core) and iipsrv (flat tiled TIFFs on disk), one after the other. */
async function coldFlat(store: S3Store, sources: Sources): Promise<ColdResult> {
  const fleets = [];
  for (const processes of [REPLICAS, availableParallelism()]) fleets.push({ processes, ...(await coldFleet(store, processes)) });
  const folder = await mkdtemp(join(tmpdir(), 'iiif-fleet-iipsrv-'));
  const tiffNames = coldIdentifiers.map((name) => name.replace(/\.jpg$/, '.tif'));
  try {
    for (const [i, name] of tiffNames.entries()) await symlink(sources.tiffs[i % sources.tiffs.length]!, join(folder, name));
    const iipsrv = await startIipsrv(folder, availableParallelism());
    let theirs: Measurement;
    try {
      const warmupSeconds = await openAll(iipsrv.url, '/iiif', tiffNames);
      theirs = { ...(await measure([iipsrv.pid], iipsrv.url, coldWorkload('/iiif', tiffNames), COLD_CONNECTIONS, IIPSRV_PROBE)), warmupSeconds };
    } finally {
      await iipsrv.stop();
    }
    console.log(`iipsrv ${describeMeasurement(theirs)}`);
    const ours = fleets.map((f) => ({ ...f, ratioPerCore: Math.round((f.measurement.requestsPerSecondPerCore / theirs.requestsPerSecondPerCore) * 100) / 100 }));
    return { ours, iipsrv: theirs, load: load() };
  } finally {
    await rm(folder, { recursive: true, force: true });
  }
}

const statusText = (counts: Record<string, number>) => Object.entries(counts).map(([status, n]) => `${n} × ${status}`).join(', ');

function report(a: NewImageResult, built: PrebuildResult, b: JoinResult, c: ColdResult): string {
  const total = a.conversions.reduce((x, y) => x + y, 0);
  const cRow = (who: string, m: Measurement) =>
    `| ${who} | ${m.requests} | ${m.requestsPerSecond} | ${m.latencyMs.p50} | ${m.latencyMs.p99} | ${m.errors} | ${m.non2xx} (503: ${m.status503}) | ${m.coresUsed} | **${m.requestsPerSecondPerCore}** | ${m.probe.p99Ms} / ${m.probe.maxMs} | ${m.warmupSeconds} |`;
  return [
    `S3: s3rver behind a proxy with ${S3_FROM_EC2.firstByteMs} ms to first byte and ${S3_FROM_EC2.bytesPerSecond / 1e6} MB/s per connection. ${REPLICAS} server processes behind HAProxy, IIIF_DERIVATIVE_PREFIX=${DERIVATIVE_PREFIX}.`,
    '',
    `**a. One new ${BENCH_WIDTH}×${BENCH_HEIGHT} JPEG (${mb(a.sourceBytes)} MB), one viewer** (info.json + ${SESSION_TILES} tiles, 6 at a time), load ${a.load}:`,
    '',
    '| requests | statuses | wall ms | p50 ms | max ms | conversions (r0…r3) | derivative built / found / gave up waiting | whole-source GETs | S3 GETs (ranged) | S3 MB | budget MB |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    `| ${a.requests} | ${statusText(a.statuses)} | ${a.wallMs} | ${a.p50Ms} | ${a.maxMs} | **${total}** (${a.conversions.join(' / ')}) | ${a.obtained.built} / ${a.obtained.found} / ${a.obtained.timeout} | ${a.sourceFullGets} | ${a.s3.gets} (${a.s3.rangeGets}) | **${mb(a.s3.bytes)}** | ${mb(a.budgetBytes)} |`,
    '',
    `**Derivatives made beforehand** (\`iiif-elastic pyramid s3://${BUCKET}/${SOURCE_PREFIX} --to-derivatives\`, through the same proxy): ${built.seconds} s, load ${built.load}: ${built.summary}`,
    '',
    `**b. A fresh process joining a warm fleet** (${WARM_IMAGES} images with derivatives, each opened by a viewer on the ${REPLICAS} warm processes first), ${JOIN_TILES} tiles not asked for before, the images interleaved, ${JOIN_CONCURRENCY} at a time, load ${b.load}:`,
    '',
    '| requests | statuses | newcomer\'s share | its statuses | its p50 ms | its p90 ms | its max ms | others\' p90 ms | its conversions | its waits given up | S3 GETs | S3 MB |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    `| ${b.requests} | ${statusText(b.statuses)} | ${b.newcomerRequests} | ${statusText(b.newcomerStatuses)} | ${b.newcomerP50Ms} | **${b.newcomerP90Ms}** | ${b.newcomerMaxMs} | ${b.othersP90Ms} | ${b.newcomerConversions} | ${b.newcomerTimeouts} | ${b.s3.gets} | ${mb(b.s3.bytes)} |`,
    '',
    `**c. Cold flat sources** (${COLD_IDENTIFIERS} identifiers, every tile of every level shuffled, ${COLD_SECONDS} s, ${COLD_CONNECTIONS} connections, IIIF 2.1 URLs; first each identifier's info.json, the warm-up column). Ours: fresh processes behind HAProxy with empty caches, derivatives in the store, CPU of the server processes (HAProxy not counted), ${c.ours.map((f) => f.conversions).join(' / ')} conversions during the runs. iipsrv: the same images as flat tiled TIFFs (256-px JPEG tiles, one resolution) on local disk, lighttpd + ${availableParallelism()} FastCGI processes. Load ${c.load}:`,
    '',
    '| server | requests | req/s | p50 ms | p99 ms | errors | non-2xx | cores used | tiles/s per core | probe p99 / max ms (ours /health) | warm-up s |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...c.ours.map((f) => cRow(`ours, ${f.processes} processes`, f.measurement)),
    cRow('iipsrv', c.iipsrv),
    '',
    `Ratio per core, ours / iipsrv: ${c.ours.map((f) => `**${f.ratioPerCore}** with ${f.processes} processes`).join(', ')}.`,
  ].join('\n');
}

async function main(): Promise<void> {
  const sources = await ensureSources(benchDataDir());
  const store = await S3Store.start();
  try {
    const jpegs = await Promise.all(sources.jpegs.map((path) => readFile(path)));
    await store.put(`${SOURCE_PREFIX}${NEW_IMAGE}`, jpegs[0]!);
    for (const [i, identifier] of coldIdentifiers.entries()) await store.put(`${SOURCE_PREFIX}${identifier}`, jpegs[i % jpegs.length]!);
    store.link = S3_FROM_EC2;
    console.log(`load ${load()}: a. one new image through the fleet`);
    const a = await newImage(store, jpegs[0]!.length);
    console.log(`a: ${JSON.stringify(a)}`);
    console.log(`load ${load()}: derivatives of ${COLD_IDENTIFIERS} identifiers with the CLI`);
    const built = await prebuild(store);
    console.log(`prebuild: ${JSON.stringify(built)}`);
    console.log(`load ${load()}: b. a new process joins a warm fleet`);
    const b = await joinWarmFleet(store);
    console.log(`b: ${JSON.stringify(b)}`);
    console.log(`load ${load()}: c. cold flat sources, ours and iipsrv`);
    const c = await coldFlat(store, sources);
    await writeReport('fleet', 'Fleet derivatives', { link: S3_FROM_EC2, a, prebuild: built, b, c }, report(a, built, b, c), 'fetch (a, b) and autocannon (c) on loopback, same machine');
  } finally {
    await store.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
