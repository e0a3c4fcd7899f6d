/**
 * `npm run capacity`: how many requests per second one container sustains, measured the way
 * production runs. The Docker image (Node 22) is started as the ECS task definition runs it,
 * with the task's CPU and memory limits (docker run --cpus/--memory), its environment (the
 * production cache settings: a 128 MiB result cache, source and pyramid caches on fresh
 * volumes) and a read-only root; its images come from S3 through a proxy that throttles them to
 * what S3 delivers. A realistic mix goes in at a stepped, evenly paced rate: viewer tiles,
 * info.json and thumbnails of images the container holds, and now and then a never-seen image
 * opened cold (fetched from S3; some converted to a pyramid on first touch). Each step is run
 * `--repeats` times and its median figures are judged, until p99 of the warm requests crosses
 * the SLO or errors appear; then `--refine` steps bisect. The highest good rate is R_max; with
 * the CPU curve and peak RSS it is written to deploy/capacity.json, from which
 * `npm run deploy:render` derives the scaling thresholds, the alarms and the task's memory.
 *
 *   npm run capacity [-- --cpus 1 --memory-mib 2048 --slo-ms 200 --headroom 0.7 --hold 10 --repeats 3 ...]
 *   npm run capacity -- --smoke     a few tiny steps: proves the harness, writes kind "smoke"
 *                                   to bench/results/capacity-smoke.json (render refuses it)
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Capacity, CapacityStep } from '../deploy/src/capacity.js';
import { taskDefinition } from '../deploy/src/ecs.js';
import { serverEnvironmentFor } from '../deploy/src/sizing.js';
import { stopTimings } from '../deploy/src/timings.js';
import { buildImage, docker } from '../scripts/cluster/replicas.js';
import { projectRoot } from '../src/paths.js';
import { BENCH_HEIGHT, BENCH_WIDTH, ensureBenchImages, PLAIN_JPEGS, PYRAMIDS } from './images.js';
import { startLocalTask, type LocalTask } from './local-task.js';
import { pacedLoad } from './paced-load.js';
import { benchDataDir, machine } from './run.js';
import { BUCKET, S3Store, type Link } from './s3-store.js';
import { cpuSeconds, watchPeakRss } from './server-process.js';
import { levelTiles, shuffled, tilePaths, type Dimensions } from './workloads.js';

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
  /** Runs per step; the step's figures are their medians (peak memory and the slowest request: the largest). */
  repeats: number;
  /**
   * Copies of each pyramid in the warm set, each under its own identifier, so the warm tiles
   * outnumber what the 128 MiB result cache holds (as a collection's do): tiles are rendered,
   * not replayed from memory.
   */
  warmCopies: number;
  /** One never-seen image opened per this many requests (0: none). */
  coldEvery: number;
  /** Every this-many-th cold image is a single-level JPEG, converted to a pyramid on first touch (0: none). */
  flatEvery: number;
  s3: Link;
  /** The image's base (docker/Dockerfile's NODE_IMAGE). */
  baseImage: string;
  smoke: boolean;
  out: string;
}

/** The image the run builds from docker/Dockerfile. */
const IMAGE = 'iiif-elastic:capacity';
/** Out of every 20 warm requests: 17 viewer tiles, 2 info.json, 1 thumbnail. */
const MIX_PERIOD = 20;
const THUMBNAIL_SIZES = ['!150,150', '!200,200', '!300,300'];
/** A viewer opening an image asks for info.json, then the tiles of the level that fits its screen. */
const SCREEN_PIXELS = 1024;
const COLD_PREFIX = 'cold-';
const WARM_PREFIX = 'warm-';
const PREFIX = '/iiif/3';

/** The images a run requests (all of one size) and the folder they are in. */
export interface MixImages {
  dataDir: string;
  /** Tiled pyramids: the warm set, and copies opened cold. */
  pyramids: readonly string[];
  /** Single-level JPEGs: copies opened cold are converted on first touch. */
  flats: readonly string[];
  size: Dimensions;
}

/** The benchmark's images (generated into bench/data the first time). */
export async function benchImages(log: (line: string) => void): Promise<MixImages> {
  return { dataDir: await ensureBenchImages(benchDataDir(), log), pyramids: PYRAMIDS, flats: PLAIN_JPEGS, size: { width: BENCH_WIDTH, height: BENCH_HEIGHT } };
}

export function describeMix(images: MixImages, options: Pick<CapacityOptions, 'coldEvery' | 'flatEvery' | 'warmCopies'>): string {
  const set = `${options.warmCopies * images.pyramids.length} images (${options.warmCopies} copies of ${images.pyramids.length} pyramid(s) of ${images.size.width}×${images.size.height}, each its own identifier)`;
  const warm = `warm, per ${MIX_PERIOD} requests: 17 deep-zoom tiles (every zoom level of ${set}, shuffled), 2 info.json, 1 thumbnail (${THUMBNAIL_SIZES.join(' ')})`;
  if (options.coldEvery <= 0) return warm;
  const flat = options.flatEvery > 0 ? `, every ${options.flatEvery}th of them a single-level JPEG converted on first touch` : '';
  return `${warm}; cold: one never-seen image opened per ${options.coldEvery} requests (info.json, then the tiles of the level that fits ${SCREEN_PIXELS} px)${flat}`;
}

/**
 * The warm request list a step cycles through: what viewers send when they open images
 * (info.json), pan and zoom (tiles across every level) and list them (thumbnails).
 */
export function capacityMix(images: Pick<MixImages, 'pyramids' | 'size'>): string[] {
  const tiles = shuffled(images.pyramids.flatMap((name) => tilePaths(images.size, 256, 3).map((path) => `${PREFIX}/${name}/${path}`)));
  const infos = images.pyramids.map((name) => `${PREFIX}/${name}/info.json`);
  const thumbnails = images.pyramids.flatMap((name) => THUMBNAIL_SIZES.map((size) => `${PREFIX}/${name}/full/${size}/0/default.jpg`));
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

/** The warm set's identifiers: `copies` of each pyramid, each new to every cache. */
export function warmIdentifiers(pyramids: readonly string[], copies: number): string[] {
  return Array.from({ length: copies }, (_, copy) => pyramids.map((name) => `${WARM_PREFIX}${copy}-${name}`)).flat();
}

/** What a viewer asks for when it opens `identifier`: info.json, then the level that fits the screen. */
export function coldOpen(identifier: string, size: Dimensions): string[] {
  let factor = 1;
  while (Math.max(size.width, size.height) / factor > SCREEN_PIXELS) factor *= 2;
  return [`${PREFIX}/${identifier}/info.json`, ...levelTiles(size, 256, factor, 3).map((path) => `${PREFIX}/${identifier}/${path}`)];
}

/** The stored object a warm or cold identifier is a copy of (the S3 proxy serves it under every such key). */
export const storedKey = (key: string): string => key.replace(/^(cold|warm)-\d+-/, '');

/** Whether a request belongs to a cold open (its latency is reported apart from the SLO's). */
export const isCold = (path: string): boolean => path.startsWith(`${PREFIX}/${COLD_PREFIX}`);

/**
 * The request stream: the warm list in a cycle, with a cold open spliced in every `coldEvery`
 * requests. Cold identifiers are numbered across the whole run, so each is new to the container.
 */
export function mixStream(images: Pick<MixImages, 'pyramids' | 'flats' | 'size'>, options: Pick<CapacityOptions, 'coldEvery' | 'flatEvery' | 'warmCopies'>): () => string {
  const warm = capacityMix({ pyramids: warmIdentifiers(images.pyramids, options.warmCopies), size: images.size });
  let [sent, next, opened] = [0, 0, 0];
  const pending: string[] = [];
  return () => {
    if (options.coldEvery > 0 && sent++ % options.coldEvery === options.coldEvery - 1) {
      const flat = options.flatEvery > 0 && images.flats.length > 0 && opened % options.flatEvery === 0;
      const sources = flat ? images.flats : images.pyramids;
      pending.push(...coldOpen(`${COLD_PREFIX}${opened}-${sources[opened % sources.length]!}`, images.size));
      opened++;
    }
    return pending.shift() ?? warm[next++ % warm.length]!;
  };
}

/** Why a step does not count as sustainable, or undefined when it held. */
export function stepFailure(step: Omit<CapacityStep, 'failure'>, options: Pick<CapacityOptions, 'sloP99Ms' | 'memoryLimitMiB'>): string | undefined {
  if (step.errors > 0) return `${step.errors} connection errors or timeouts`;
  if (step.non2xx > 0) return `${step.non2xx} non-2xx answers (503 = admission control shedding load)`;
  if (step.p99Ms > options.sloP99Ms) return `p99 ${step.p99Ms} ms above the SLO ${options.sloP99Ms} ms`;
  // A server that falls behind shows in p99 (latency counts from the scheduled moment); a
  // generator that falls behind its own schedule did not offer the rate, so nothing was measured.
  if (step.achievedRate < step.offeredRate * 0.9) return `the load generator sent only ${step.achievedRate} req/s of ${step.offeredRate} (busy machine: the rate was not offered)`;
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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** The repetitions of one step as one step: medians, except memory and the slowest request (the largest). */
export function combineRuns(runs: Array<Omit<CapacityStep, 'failure' | 'repeats'>>): Omit<CapacityStep, 'failure'> {
  const mid = (figure: keyof Omit<CapacityStep, 'failure' | 'repeats'>, decimals = 1) => round(median(runs.map((run) => run[figure])), decimals);
  return {
    offeredRate: runs[0]!.offeredRate,
    achievedRate: mid('achievedRate'),
    p99Ms: mid('p99Ms'),
    p99AllMs: mid('p99AllMs'),
    maxMs: Math.max(...runs.map((run) => run.maxMs)),
    coldP99Ms: mid('coldP99Ms'),
    errors: mid('errors'),
    non2xx: mid('non2xx'),
    coresUsed: mid('coresUsed', 3),
    peakRssMiB: Math.max(...runs.map((run) => run.peakRssMiB)),
    repeats: runs.length,
  };
}

async function runOnce(task: LocalTask, nextPath: () => string, rate: number, holdSeconds: number): Promise<Omit<CapacityStep, 'failure' | 'repeats'>> {
  const rss = watchPeakRss(task.pid);
  const cpuBefore = await cpuSeconds(task.pid);
  const started = process.hrtime.bigint();
  const result = await pacedLoad(task.url, rate, holdSeconds, nextPath, 60_000, (path) => (isCold(path) ? 'cold' : 'warm'));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cores = ((await cpuSeconds(task.pid)) - cpuBefore) / seconds;
  return {
    offeredRate: rate,
    achievedRate: round(result.requests / (result.sendSeconds + 1 / rate)),
    p99Ms: result.groups.warm?.p99Ms ?? 0,
    p99AllMs: result.p99Ms,
    maxMs: result.maxMs,
    coldP99Ms: result.groups.cold?.p99Ms ?? 0,
    errors: result.errors,
    non2xx: result.non2xx,
    // Three decimals: light steps use a few thousandths of a core.
    coresUsed: round(cores, 3),
    peakRssMiB: round((await rss.stop()) / 2 ** 20),
  };
}

/** The task definition for the container size being measured, with local references. */
function measuredTask(options: Pick<CapacityOptions, 'cpus' | 'memoryLimitMiB'>) {
  // Each container's own pyramids, as the capacity was measured (no shared derivative store).
  const refs = { image: IMAGE, bucket: BUCKET, bucketPrefix: '', derivativePrefix: '', region: 'us-east-1', alarmNames: [] };
  const unused = { executionRoleArn: '', taskRoleArn: '', logGroup: '', cluster: '', targetGroupArn: '', capacityProvider: '' };
  const sizing = {
    cpuUnits: options.cpus * 1024,
    memoryMiB: options.memoryLimitMiB,
    // One container alone on the machine: no placement, and a soft limit equal to the hard one changes nothing.
    memoryReservationMiB: options.memoryLimitMiB,
    serverEnvironment: serverEnvironmentFor(options.cpus),
    timings: stopTimings(),
  };
  return taskDefinition({ ...refs, ...unused }, sizing);
}

/**
 * Builds the image, serves `images` from a throttled S3 stand-in, starts the task and runs the
 * stepped search against it.
 */
export async function measureCapacity(options: CapacityOptions, images: MixImages, log: (line: string) => void): Promise<Capacity> {
  log(`building ${IMAGE} on ${options.baseImage}`);
  await buildImage(IMAGE, options.baseImage);
  const node = await docker('run', '--rm', '--pull', 'never', '--entrypoint', 'node', IMAGE, '--version');
  const store = await S3Store.start();
  const steps: CapacityStep[] = [];
  const search = rateSearch(options);
  try {
    for (const name of new Set([...images.pyramids, ...images.flats])) await store.put(name, await readFile(join(images.dataDir, name)));
    store.link = options.s3;
    store.alias = storedKey;
    const environment = { IIIF_S3_ENDPOINT: store.endpoint, IIIF_S3_FORCE_PATH_STYLE: 'true', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
    const task = await startLocalTask(measuredTask(options), { image: IMAGE, environment });
    try {
      // The warm set is what the container already holds: fetched from S3 once, before measuring.
      for (const identifier of warmIdentifiers(images.pyramids, options.warmCopies)) await (await fetch(`${task.url}${PREFIX}/${identifier}/info.json`)).arrayBuffer();
      const nextPath = mixStream(images, options);
      for (let rate: number | undefined = search.first; rate !== undefined; ) {
        const runs = [];
        for (let i = 0; i < options.repeats; i++) runs.push(await runOnce(task, nextPath, rate, options.holdSeconds));
        const combined = combineRuns(runs);
        const died = await task.stopped();
        const step = { ...combined, failure: died ? `the container ${died}` : stepFailure(combined, options) };
        steps.push(step);
        // A step that fails while the container has CPU to spare was limited by the machine (the
        // load generator, other processes) or by S3: R_max is then a lower bound.
        const spare = step.failure && step.coresUsed < options.cpus * 0.8 ? ` (the container used ${step.coresUsed} of ${options.cpus} cores: limited outside it)` : '';
        log(
          `${rate} req/s × ${options.repeats}: ${step.achievedRate} achieved, p99 ${step.p99Ms} ms warm / ${step.p99AllMs} ms all / ${step.coldP99Ms} ms cold, max ${step.maxMs} ms, ${step.coresUsed} cores, peak ${step.peakRssMiB} MiB → ${step.failure ?? 'held'}${spare}`,
        );
        if (died) break;
        rate = search.next(rate, step.failure === undefined);
      }
    } finally {
      await task.remove();
    }
  } finally {
    await store.close();
  }
  const best = steps.find((step) => step.failure === undefined && step.offeredRate === search.sustainable);
  if (!best) throw new Error(`no step held the SLO (first step ${options.startRate} req/s: ${steps[0]?.failure}); try a lower --start`);
  if (steps.every((step) => step.failure === undefined)) log(`every step held up to --max-rate ${options.maxRate}: R_max is at least ${best.offeredRate} req/s; raise --max-rate for the real limit`);
  const { firstByteMs, bytesPerSecond } = options.s3;
  return {
    kind: options.smoke ? 'smoke' : 'measured',
    date: new Date().toISOString(),
    machine: machine(),
    setup: `docker/Dockerfile on ${options.baseImage} (Node ${node}), run as the ECS task definition runs it: docker run --cpus ${options.cpus} --memory ${options.memoryLimitMiB}m, read-only root, fresh cache volumes, the task's environment (result cache 128 MiB, source and pyramid disk caches); sources from S3 through a throttling proxy (first byte ${firstByteMs} ms, ${round(bytesPerSecond / 1e6)} MB/s per connection); each step run ${options.repeats} time(s) for ${options.holdSeconds} s, medians`,
    container: { cpus: options.cpus, memoryLimitMiB: options.memoryLimitMiB },
    sloP99Ms: options.sloP99Ms,
    headroom: options.headroom,
    sustainableRequestsPerSecond: best.offeredRate,
    coresAtSustainable: best.coresUsed,
    peakRssMiBAtSustainable: Math.max(...steps.filter((step) => step.offeredRate <= best.offeredRate).map((step) => step.peakRssMiB)),
    mix: describeMix(images, options),
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
      factor: { type: 'string', default: '2' },
      'max-rate': { type: 'string' },
      refine: { type: 'string' },
      hold: { type: 'string' },
      repeats: { type: 'string' },
      'warm-copies': { type: 'string' },
      'cold-every': { type: 'string', default: '1000' },
      'flat-every': { type: 'string', default: '50' },
      's3-first-byte-ms': { type: 'string', default: '100' },
      's3-mb-per-s': { type: 'string', default: '85' },
      'base-image': { type: 'string', default: 'node:22-bookworm-slim' },
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
    startRate: number('start', values.start ?? (smoke ? '5' : '100'), 1),
    factor: number('factor', values.factor, 1.05),
    maxRate: number('max-rate', values['max-rate'] ?? (smoke ? '10' : '10000'), 1),
    refineSteps: Math.floor(number('refine', values.refine ?? (smoke ? '0' : '2'), 0)),
    holdSeconds: number('hold', values.hold ?? (smoke ? '3' : '10'), 1),
    repeats: Math.floor(number('repeats', values.repeats ?? (smoke ? '1' : '3'), 1)),
    warmCopies: Math.floor(number('warm-copies', values['warm-copies'] ?? (smoke ? '1' : '8'), 1)),
    coldEvery: Math.floor(number('cold-every', values['cold-every'], 0)),
    flatEvery: Math.floor(number('flat-every', values['flat-every'], 0)),
    s3: { firstByteMs: number('s3-first-byte-ms', values['s3-first-byte-ms'], 0), bytesPerSecond: number('s3-mb-per-s', values['s3-mb-per-s'], 0.1) * 1e6 },
    baseImage: values['base-image'],
    out: values.out ?? join(projectRoot(), ...(smoke ? ['bench', 'results', 'capacity-smoke.json'] : ['deploy', 'capacity.json'])),
  };
}

/** `npm run capacity` and `iiif-elastic capacity`: measure, then write capacity.json. */
export async function runCapacity(args: string[]): Promise<void> {
  const options = optionsFromArgs(args);
  const log = (line: string) => console.log(line);
  const capacity = await measureCapacity(options, await benchImages(log), log);
  await mkdir(dirname(options.out), { recursive: true });
  await writeFile(options.out, `${JSON.stringify(capacity, null, 2)}\n`);
  console.log(`R_max ${capacity.sustainableRequestsPerSecond} req/s per container (warm p99 ≤ ${capacity.sloP99Ms} ms), ${capacity.coresAtSustainable} cores, peak ${capacity.peakRssMiBAtSustainable} MiB → ${options.out}`);
}

if (process.argv[1]?.endsWith('capacity.js')) {
  runCapacity(process.argv.slice(2)).catch((error: unknown) => {
    process.stderr.write(`capacity: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
}
