/**
 * `npm run capacity`: how many requests per second one container sustains. One server process,
 * limited like one ECS container (pinned to `--cpus` cores with taskset; its peak RSS must stay
 * under `--memory-mib`), gets a realistic mix at a stepped request rate, each step held, until
 * p99 crosses the SLO or errors appear. The rate grows by `--factor` per step until a step
 * fails, then `--refine` steps bisect between the last good and the first bad rate. The highest
 * good rate is R_max; with the CPU and peak RSS at R_max it is written to deploy/capacity.json,
 * from which `npm run deploy:render` derives the scaling thresholds and the task's memory.
 *
 *   npm run capacity [-- --cpus 1 --memory-mib 2048 --slo-ms 200 --headroom 0.7 --hold 15 ...]
 *   npm run capacity -- --smoke     a few tiny steps: proves the harness, writes kind "smoke"
 *                                   to bench/results/capacity-smoke.json (render refuses it)
 */
import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import { pacedLoad } from './paced-load.js';
import type { Capacity, CapacityStep } from '../deploy/src/capacity.js';
import { serverEnvironmentFor } from '../deploy/src/sizing.js';
import { projectRoot } from '../src/paths.js';
import { BENCH_HEIGHT, BENCH_WIDTH, ensureBenchImages, PYRAMIDS } from './images.js';
import { benchDataDir, machine } from './run.js';
import { cpuSeconds, startServer, watchPeakRss, type RunningServer } from './server-process.js';
import { shuffled, tilePaths, type Dimensions } from './workloads.js';

export interface CapacityOptions {
  cpus: number;
  memoryLimitMiB: number;
  sloP99Ms: number;
  headroom: number;
  startRate: number;
  factor: number;
  maxRate: number;
  refineSteps: number;
  holdSeconds: number;
  smoke: boolean;
  out: string;
}

/** Out of every 20 requests: 17 viewer tiles, 2 info.json, 1 thumbnail. */
const MIX_PERIOD = 20;
const THUMBNAIL_SIZES = ['!150,150', '!200,200', '!300,300'];

/** The images a run requests (all of one size) and the folder they are in. */
export interface MixImages {
  dataDir: string;
  names: readonly string[];
  size: Dimensions;
}

/** The benchmark's pyramids (generated into bench/data the first time). */
export async function benchImages(log: (line: string) => void): Promise<MixImages> {
  return { dataDir: await ensureBenchImages(benchDataDir(), log), names: PYRAMIDS, size: { width: BENCH_WIDTH, height: BENCH_HEIGHT } };
}

export function describeMix(images: MixImages): string {
  return `per ${MIX_PERIOD} requests: 17 deep-zoom tiles (every zoom level of ${images.names.length} pyramid(s) of ${images.size.width}×${images.size.height}, shuffled), 2 info.json, 1 thumbnail (${THUMBNAIL_SIZES.join(' ')})`;
}

/**
 * The request list a step cycles through: what viewers send when they open images (info.json),
 * pan and zoom (tiles across every level) and list them (thumbnails).
 */
export function capacityMix(images: Pick<MixImages, 'names' | 'size'>, prefix = '/iiif/3'): string[] {
  const tiles = shuffled(images.names.flatMap((name) => tilePaths(images.size, 256, 3).map((path) => `${prefix}/${name}/${path}`)));
  const infos = images.names.map((name) => `${prefix}/${name}/info.json`);
  const thumbnails = images.names.flatMap((name) => THUMBNAIL_SIZES.map((size) => `${prefix}/${name}/full/${size}/0/default.jpg`));
  const paths: string[] = [];
  let [tile, info, thumbnail] = [0, 0, 0];
  while (tile < tiles.length) {
    const slot = paths.length % MIX_PERIOD;
    if (slot < 2) paths.push(infos[info++ % infos.length]!);
    else if (slot === 2) paths.push(thumbnails[thumbnail++ % thumbnails.length]!);
    else paths.push(tiles[tile++]!);
  }
  return paths;
}

/** Why a step does not count as sustainable, or undefined when it held. */
export function stepFailure(step: Omit<CapacityStep, 'failure'>, options: Pick<CapacityOptions, 'sloP99Ms' | 'memoryLimitMiB'>): string | undefined {
  if (step.errors > 0) return `${step.errors} connection errors or timeouts`;
  if (step.non2xx > 0) return `${step.non2xx} non-2xx answers (503 = admission control shedding load)`;
  if (step.p99Ms > options.sloP99Ms) return `p99 ${step.p99Ms} ms above the SLO ${options.sloP99Ms} ms`;
  // Under pacing, a server that falls behind shows as a lower achieved rate before p99 moves.
  if (step.achievedRate < step.offeredRate * 0.9) return `achieved ${step.achievedRate} req/s of ${step.offeredRate} offered`;
  if (step.peakRssMiB > options.memoryLimitMiB) return `peak RSS ${step.peakRssMiB} MiB above the container limit ${options.memoryLimitMiB} MiB (would be OOM-killed)`;
  return undefined;
}

/**
 * The rates to try: geometric growth until a failure, then bisection. `next` is asked after
 * each step with its outcome; it returns undefined when the search is done.
 */
export function rateSearch(options: Pick<CapacityOptions, 'startRate' | 'factor' | 'maxRate' | 'refineSteps'>) {
  let good = 0;
  let bad = Infinity;
  let refinements = 0;
  return {
    first: options.startRate,
    next(rate: number, held: boolean): number | undefined {
      if (held) good = Math.max(good, rate);
      else bad = Math.min(bad, rate);
      if (bad === Infinity) {
        const grown = Math.round(rate * options.factor);
        return grown <= options.maxRate ? grown : undefined;
      }
      if (good === 0 || refinements >= options.refineSteps) return undefined;
      refinements++;
      const middle = Math.round((good + bad) / 2);
      return middle > good && middle < bad ? middle : undefined;
    },
    get sustainable(): number {
      return good;
    },
  };
}

const round = (value: number, decimals = 1) => Math.round(value * 10 ** decimals) / 10 ** decimals;

async function runStep(server: RunningServer, paths: string[], cursor: { next: number }, rate: number, options: CapacityOptions): Promise<CapacityStep> {
  const rss = watchPeakRss(server.pid);
  const cpuBefore = await cpuSeconds(server.pid);
  const started = process.hrtime.bigint();
  const result = await pacedLoad(server.url, rate, options.holdSeconds, () => paths[cursor.next++ % paths.length]!, 10_000);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cores = ((await cpuSeconds(server.pid)) - cpuBefore) / seconds;
  const step = {
    offeredRate: rate,
    achievedRate: round(result.requests / seconds),
    p99Ms: result.p99Ms,
    errors: result.errors,
    non2xx: result.non2xx,
    // Three decimals: light steps use a few thousandths of a core.
    coresUsed: round(cores, 3),
    peakRssMiB: round((await rss.stop()) / 2 ** 20),
  };
  return { ...step, failure: stepFailure(step, options) };
}

/** A taskset CPU list: "0", or "0-3". */
const cpuList = (from: number, to: number): string => (from === to ? `${from}` : `${from}-${to}`);

/** Keeps the load generator off the server's cores when the machine has others. */
function pinSelfAwayFrom(serverCpus: number): string {
  const total = availableParallelism();
  if (total <= serverCpus) return `load generator sharing the server's cores`;
  const others = cpuList(serverCpus, total - 1);
  spawnSync('taskset', ['-a', '-p', '-c', others, String(process.pid)], { stdio: 'ignore' });
  return `load generator on core(s) ${others}`;
}

/**
 * Runs the stepped search against one fresh server process over `images`. `placement` says
 * where the load generator ran, for the record.
 */
export async function measureCapacity(options: CapacityOptions, images: MixImages, placement: string, log: (line: string) => void): Promise<Capacity> {
  if (options.cpus > availableParallelism()) throw new Error(`--cpus ${options.cpus} is more than this machine's ${availableParallelism()} cores`);
  const server = await startServer('taskset', ['-c', cpuList(0, options.cpus - 1), process.execPath, join(projectRoot(), 'dist', 'src', 'main.js')], {
    IIIF_FILE_ROOT: images.dataDir,
    ...serverEnvironmentFor(options.cpus),
    // The mix cycles a few thousand URLs, which a result cache would soon answer from memory
    // (measured: R_max then exceeds 4,000 req/s on one core, all hits). Production hit rates
    // are far lower, so every request here does its real work: the thresholds stay safe, and
    // whatever the cache does hit in production only adds headroom.
    IIIF_RESULT_CACHE_BYTES: '0',
  });
  const steps: CapacityStep[] = [];
  const search = rateSearch(options);
  try {
    const paths = capacityMix(images);
    for (const info of new Set(paths.filter((path) => path.endsWith('info.json')))) await fetch(`${server.url}${info}`);
    const cursor = { next: 0 };
    for (let rate: number | undefined = search.first; rate !== undefined; ) {
      const step = await runStep(server, paths, cursor, rate, options);
      steps.push(step);
      log(`${rate} req/s offered: ${step.achievedRate} achieved, p99 ${step.p99Ms} ms, ${step.coresUsed} cores, peak ${step.peakRssMiB} MiB → ${step.failure ?? 'held'}`);
      rate = search.next(rate, step.failure === undefined);
    }
  } finally {
    await server.stop();
  }
  const best = steps.find((step) => step.failure === undefined && step.offeredRate === search.sustainable);
  if (!best) throw new Error(`no step held the SLO (first step ${options.startRate} req/s: ${steps[0]?.failure}); try a lower --start`);
  if (steps.every((step) => step.failure === undefined)) log(`every step held up to --max-rate ${options.maxRate}: R_max is at least ${best.offeredRate} req/s; raise --max-rate for the real limit`);
  return {
    kind: options.smoke ? 'smoke' : 'measured',
    date: new Date().toISOString(),
    machine: `${machine()}; server pinned to ${options.cpus} core(s), ${placement}`,
    container: { cpus: options.cpus, memoryLimitMiB: options.memoryLimitMiB },
    sloP99Ms: options.sloP99Ms,
    headroom: options.headroom,
    sustainableRequestsPerSecond: best.offeredRate,
    coresAtSustainable: best.coresUsed,
    peakRssMiBAtSustainable: Math.max(...steps.filter((step) => step.offeredRate <= best.offeredRate).map((step) => step.peakRssMiB)),
    mix: describeMix(images),
    steps,
  };
}

function optionsFromArgs(args: string[]): CapacityOptions {
  const { values } = parseArgs({
    args,
    options: {
      smoke: { type: 'boolean', default: false },
      cpus: { type: 'string', default: '1' },
      'memory-mib': { type: 'string', default: '2048' },
      'slo-ms': { type: 'string', default: '200' },
      headroom: { type: 'string', default: '0.7' },
      start: { type: 'string' },
      factor: { type: 'string', default: '1.5' },
      'max-rate': { type: 'string' },
      refine: { type: 'string' },
      hold: { type: 'string' },
      out: { type: 'string' },
    },
  });
  const smoke = values.smoke;
  const number = (name: string, text: string, min: number): number => {
    const value = Number(text);
    if (!Number.isFinite(value) || value < min) throw new Error(`--${name} must be a number ≥ ${min}, got "${text}"`);
    return value;
  };
  const headroom = number('headroom', values.headroom, 0.01);
  if (headroom > 1) throw new Error(`--headroom must be at most 1, got ${headroom}`);
  return {
    smoke,
    cpus: Math.floor(number('cpus', values.cpus, 1)),
    memoryLimitMiB: Math.floor(number('memory-mib', values['memory-mib'], 128)),
    sloP99Ms: number('slo-ms', values['slo-ms'], 1),
    headroom,
    startRate: number('start', values.start ?? (smoke ? '5' : '10'), 1),
    factor: number('factor', values.factor, 1.05),
    maxRate: number('max-rate', values['max-rate'] ?? (smoke ? '10' : '5000'), 1),
    refineSteps: Math.floor(number('refine', values.refine ?? (smoke ? '0' : '2'), 0)),
    holdSeconds: number('hold', values.hold ?? (smoke ? '3' : '15'), 1),
    out: values.out ?? join(projectRoot(), ...(smoke ? ['bench', 'results', 'capacity-smoke.json'] : ['deploy', 'capacity.json'])),
  };
}

/** `npm run capacity` and `iiif-elastic capacity`: measure, then write capacity.json. */
export async function runCapacity(args: string[]): Promise<void> {
  const options = optionsFromArgs(args);
  const log = (line: string) => console.log(line);
  const images = await benchImages(log);
  const capacity = await measureCapacity(options, images, pinSelfAwayFrom(options.cpus), log);
  await mkdir(dirname(options.out), { recursive: true });
  await writeFile(options.out, `${JSON.stringify(capacity, null, 2)}\n`);
  console.log(`R_max ${capacity.sustainableRequestsPerSecond} req/s per container (p99 ≤ ${capacity.sloP99Ms} ms), ${capacity.coresAtSustainable} cores, peak ${capacity.peakRssMiBAtSustainable} MiB → ${options.out}`);
}

if (process.argv[1]?.endsWith('capacity.js')) {
  runCapacity(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`capacity: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
