/**
 * Every load-dependent number of the deployment, derived from one capacity measurement and the
 * fixed settings. Pure; refuses numbers that cannot work.
 */
import { threadPoolSize } from '../../src/thread-pool.js';
import { DeployInputError, sustainableStep, type Capacity } from './capacity.js';
import { settings, type HostType } from './settings.js';
import { stopTimings, type Timings } from './timings.js';

/** How many containers one host type takes, and the root volume their caches need. */
export interface HostSizing {
  tasksPerHost: number;
  volumeGiB: number;
}

export interface Sizing {
  /**
   * CPU units (1024 per core): the cores the container was measured with, set on the task as
   * well as the container. On EC2 the container's value is only a share; the task's is a hard
   * cap (a CFS quota), the same limit `docker run --cpus` put on the capacity run.
   */
  cpuUnits: number;
  /** Soft memory (placement) and hard memory (OOM-kill line), MiB. */
  memoryReservationMiB: number;
  memoryMiB: number;
  /** Environment for the task's cores (see serverEnvironmentFor). */
  serverEnvironment: Record<string, string>;
  /** ALBRequestCountPerTarget target: requests per target per minute = R_max × 60 × headroom. */
  requestsPerTargetPerMinute: number;
  /**
   * ECSServiceAverageCPUUtilization target, percent: the CPU the measured curve shows at the
   * request target (R_max × headroom), so both policies ask for a container at the same load
   * of the measured mix, and the CPU policy fires first only when requests grow costlier.
   */
  cpuTargetPercent: number;
  /** Deployment alarm on p99 TargetResponseTime, seconds. */
  latencyAlarmSeconds: number;
  timings: Timings;
  /** Per offered host type; types that cannot hold one container are left out. */
  hosts: Record<string, HostSizing>;
}

/**
 * The server settings that follow from a container's cores, which Node cannot see (it reports
 * the host's): renders at once in the cheap lane (one per core plus one per core for I/O waits,
 * as the server's default does for the cores it sees), and libuv's thread pool, where those
 * renders run, sized by the server's own rule (both lanes plus threads for file reads, see
 * src/thread-pool.ts). The capacity run and the task use these same values.
 */
export function serverEnvironmentFor(cpus: number): Record<string, string> {
  const renderConcurrency = cpus * 2;
  const threads = threadPoolSize({ renderConcurrency, largeRenderConcurrency: LARGE_RENDER_CONCURRENCY });
  return { IIIF_RENDER_CONCURRENCY: String(renderConcurrency), UV_THREADPOOL_SIZE: String(threads) };
}

/** The server's default for the expensive lane, which the task does not change. */
const LARGE_RENDER_CONCURRENCY = 1;

/** ECS caps stopTimeout at 120 s. */
const MAX_STOP_TIMEOUT_SECONDS = 120;

/**
 * Cores the container used at `rate`, interpolated linearly between the held steps of the
 * measured curve (and an idle container at rate 0). CPU does not rise in proportion to the
 * request rate (caches, batching, fixed costs), so no straight line through one point will do.
 */
export function coresAt(capacity: Capacity, rate: number): number {
  const points = [{ rate: 0, cores: 0 }, ...capacity.steps.filter((step) => step.failure === undefined).map((step) => ({ rate: step.offeredRate, cores: step.coresUsed }))].sort(
    (a, b) => a.rate - b.rate,
  );
  const upper = points.findIndex((point) => point.rate >= rate);
  if (upper < 0) throw new DeployInputError(`the CPU curve ends at ${points.at(-1)!.rate} req/s, below the request target ${rate} req/s`);
  if (upper === 0) return points[0]!.cores;
  const [a, b] = [points[upper - 1]!, points[upper]!];
  return a.cores + ((b.cores - a.cores) * (rate - a.rate)) / (b.rate - a.rate);
}

/** Containers per host (bounded by CPU units, a hard reservation, and by memory reservation) and the root volume for their caches. */
export function hostSizing(host: HostType, cpuUnits: number, memoryReservationMiB: number): HostSizing {
  const byCpu = Math.floor((host.vcpus * 1024) / cpuUnits);
  const byMemory = Math.floor((host.memoryGiB * 1024 - settings.hosts.reservedMemoryMiB) / memoryReservationMiB);
  const tasksPerHost = Math.max(0, Math.min(byCpu, byMemory));
  const perTaskGiB = (settings.container.sourceCacheBytes + settings.container.pyramidCacheBytes) / 1024 ** 3 + settings.hosts.volumeSlackGiB;
  return { tasksPerHost, volumeGiB: Math.ceil(settings.hosts.baseVolumeGiB + tasksPerHost * perTaskGiB) };
}

export function deriveSizing(capacity: Capacity): Sizing {
  const { cpus, memoryLimitMiB } = capacity.container;
  const cpuUnits = cpus * 1024;
  const memoryReservationMiB = Math.ceil(capacity.peakRssMiBAtSustainable * settings.memoryMarginFactor);
  const targetRate = capacity.sustainableRequestsPerSecond * capacity.headroom;
  const requestsPerTargetPerMinute = Math.floor(targetRate * 60);
  const atMax = sustainableStep(capacity);
  const timings = stopTimings();
  const hosts = Object.fromEntries(
    Object.entries(settings.hostTypes)
      .map(([type, host]): [string, HostSizing] => [type, hostSizing(host, cpuUnits, memoryReservationMiB)])
      .filter(([, sizing]) => sizing.tasksPerHost > 0),
  );

  const problems: string[] = [];
  if (memoryReservationMiB >= memoryLimitMiB) {
    problems.push(
      `memoryReservation ${memoryReservationMiB} MiB (peak RSS ${capacity.peakRssMiBAtSustainable} MiB × ${settings.memoryMarginFactor}) is not below the hard limit ${memoryLimitMiB} MiB: measure again with a larger --memory-mib`,
    );
  }
  if (requestsPerTargetPerMinute <= 0) {
    problems.push(`the request-count target is ${requestsPerTargetPerMinute} (R_max ${capacity.sustainableRequestsPerSecond} × 60 × headroom ${capacity.headroom}); it must be > 0`);
  }
  let cpuTargetPercent = NaN;
  try {
    cpuTargetPercent = Math.round(Math.min(1, coresAt(capacity, targetRate) / cpus) * 100);
    if (cpuTargetPercent <= 0) problems.push(`the CPU target is ${cpuTargetPercent} %; it must be > 0`);
  } catch (error) {
    problems.push((error as Error).message);
  }
  if (atMax.maxMs > timings.longestRequestSeconds * 1000) {
    problems.push(
      `a request took ${atMax.maxMs} ms at R_max, longer than the ${timings.longestRequestSeconds} s the deregistration delay and the drain allow: raise settings.server in deploy/src/settings.ts`,
    );
  }
  if (timings.stopTimeoutSeconds > MAX_STOP_TIMEOUT_SECONDS) problems.push(`the drain needs stopTimeout ${timings.stopTimeoutSeconds} s, above ECS's ${MAX_STOP_TIMEOUT_SECONDS} s`);
  if (!(settings.hosts.instanceType in hosts)) problems.push(`the default host type ${settings.hosts.instanceType} cannot hold one container of ${cpuUnits} CPU units and ${memoryReservationMiB} MiB`);
  if (problems.length > 0) throw new DeployInputError(problems.join('; '));

  return {
    cpuUnits,
    memoryReservationMiB,
    memoryMiB: memoryLimitMiB,
    serverEnvironment: serverEnvironmentFor(cpus),
    requestsPerTargetPerMinute,
    cpuTargetPercent,
    latencyAlarmSeconds: (settings.alarms.latencyFactor * Math.max(capacity.sloP99Ms, atMax.p99AllMs)) / 1000,
    timings,
    hosts,
  };
}
