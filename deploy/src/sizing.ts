/**
 * Every load-dependent number of the deployment, derived from one capacity measurement and the
 * fixed settings. Pure; refuses numbers that cannot work.
 */
import { threadPoolSize } from '../../src/thread-pool.js';
import { DeployInputError, type Capacity } from './capacity.js';
import { drain, settings } from './settings.js';

export interface Sizing {
  /** CPU units (1024 per core): the cores the container was measured with. */
  cpuUnits: number;
  /** Soft memory (placement) and hard memory (OOM-kill line), MiB. */
  memoryReservationMiB: number;
  memoryMiB: number;
  /** Environment for the task's cores (see serverEnvironmentFor). */
  serverEnvironment: Record<string, string>;
  /** ALBRequestCountPerTarget target: requests per target per minute = R_max × 60 × headroom. */
  requestsPerTargetPerMinute: number;
  /** ECSServiceAverageCPUUtilization target, percent: CPU at R_max (of the task's cores) × headroom. */
  cpuTargetPercent: number;
  /** Seconds between SIGTERM and SIGKILL: the whole drain plus a little. */
  stopTimeoutSeconds: number;
  /**
   * ECS deregisters a stopping task's target, waits this long (the ALB sends it nothing new
   * while requests in flight finish), then sends SIGTERM; the container's own drain delay is the
   * same window for load balancers that only watch /health.
   */
  deregistrationDelaySeconds: number;
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

export function deriveSizing(capacity: Capacity): Sizing {
  const { cpus, memoryLimitMiB } = capacity.container;
  const memoryReservationMiB = Math.ceil(capacity.peakRssMiBAtSustainable * settings.memoryMarginFactor);
  const requestsPerTargetPerMinute = Math.floor(capacity.sustainableRequestsPerSecond * 60 * capacity.headroom);
  const cpuShare = capacity.coresAtSustainable / cpus;
  const cpuTargetPercent = Math.round(Math.min(1, cpuShare) * 100 * capacity.headroom);
  const stopTimeoutSeconds = Math.ceil((drain.delay.ms + drain.timeout.ms) / 1000) + 2;

  const problems: string[] = [];
  if (memoryReservationMiB >= memoryLimitMiB) {
    problems.push(
      `memoryReservation ${memoryReservationMiB} MiB (peak RSS ${capacity.peakRssMiBAtSustainable} MiB × ${settings.memoryMarginFactor}) is not below the hard limit ${memoryLimitMiB} MiB: measure again with a larger --memory-mib`,
    );
  }
  if (requestsPerTargetPerMinute <= 0) {
    problems.push(`the request-count target is ${requestsPerTargetPerMinute} (R_max ${capacity.sustainableRequestsPerSecond} × 60 × headroom ${capacity.headroom}); it must be > 0`);
  }
  if (cpuTargetPercent <= 0) problems.push(`the CPU target is ${cpuTargetPercent} %; it must be > 0`);
  if (stopTimeoutSeconds > MAX_STOP_TIMEOUT_SECONDS) problems.push(`the drain needs stopTimeout ${stopTimeoutSeconds} s, above ECS's ${MAX_STOP_TIMEOUT_SECONDS} s`);
  if (problems.length > 0) throw new DeployInputError(problems.join('; '));

  return {
    cpuUnits: cpus * 1024,
    memoryReservationMiB,
    memoryMiB: memoryLimitMiB,
    serverEnvironment: serverEnvironmentFor(cpus),
    requestsPerTargetPerMinute,
    cpuTargetPercent,
    stopTimeoutSeconds,
    deregistrationDelaySeconds: Math.ceil(drain.delay.ms / 1000),
  };
}
