/**
 * deploy/capacity.json: what `npm run capacity` measured for one container. The scaling
 * thresholds, the alarms and the task's memory and CPU are derived from it, never typed in by
 * hand, so this module is strict: a file that is missing, malformed, or not a real measurement
 * is refused with one line saying what to do.
 */
import { readFile } from 'node:fs/promises';

/** One step of the stepped-rate run: the median of its repetitions (peak memory: the largest). */
export interface CapacityStep {
  /** Requests per second offered, evenly paced. */
  offeredRate: number;
  /** Requests per second the load generator really sent on its schedule (below the offer only if it fell behind). */
  achievedRate: number;
  /** p99 of the requests for images the container already holds: what the SLO applies to. */
  p99Ms: number;
  /** p99 and slowest of every request, the first touches of cold images included. */
  p99AllMs: number;
  maxMs: number;
  /** p99 of the requests that opened cold images (fetched from S3, perhaps converted), 0 when none. */
  coldP99Ms: number;
  /** Connection errors and timeouts. */
  errors: number;
  /** Non-2xx answers (503s from admission control included). */
  non2xx: number;
  coresUsed: number;
  peakRssMiB: number;
  repeats: number;
  /** Why this step failed, or undefined when it held. */
  failure?: string;
}

export interface Capacity {
  /** Only `measured` files may drive a deployment; `smoke` runs just prove the harness works. */
  kind: 'measured' | 'smoke';
  date: string;
  machine: string;
  /** How the server ran: the image, its Node, the source and the cache settings. */
  setup: string;
  /** The limits the container ran under (docker run --cpus/--memory), as the ECS task has them. */
  container: { cpus: number; memoryLimitMiB: number };
  sloP99Ms: number;
  /** Fraction of the sustainable rate a container is kept at, leaving time to scale out. */
  headroom: number;
  /** R_max: the highest offered rate that held the SLO with no errors. */
  sustainableRequestsPerSecond: number;
  /** CPU cores and peak RSS of the server at R_max. */
  coresAtSustainable: number;
  peakRssMiBAtSustainable: number;
  mix: string;
  steps: CapacityStep[];
}

/** A deployment input that cannot work; main() prints its message as one line and exits 1. */
export class DeployInputError extends Error {
  override name = 'DeployInputError';
}

export async function readCapacity(path: string): Promise<Capacity> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    throw new DeployInputError(`${path} is missing: run \`npm run capacity\` on the target instance type first`);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new DeployInputError(`${path} is not valid JSON (${(error as Error).message})`);
  }
  return parseCapacity(data, path);
}

/** The figures of each step the deployment reads (the CPU curve, the latency alarm, the drain check). */
const STEP_FIGURES = ['offeredRate', 'coresUsed', 'p99AllMs', 'maxMs', 'peakRssMiB'] as const;

/** Checks every field the deployment uses; the message names the file and the field. */
export function parseCapacity(data: unknown, where: string): Capacity {
  const problems: string[] = [];
  const object = (value: unknown, name: string): Record<string, unknown> => {
    if (typeof value === 'object' && value !== null && !Array.isArray(value)) return value as Record<string, unknown>;
    problems.push(`${name} must be an object`);
    return {};
  };
  const root = object(data, 'the file');
  const number = (record: Record<string, unknown>, name: string, check: (n: number) => boolean, rule: string): number => {
    const value = record[name.split('.').at(-1)!];
    if (typeof value !== 'number' || !Number.isFinite(value) || !check(value)) {
      problems.push(`${name} must be ${rule}, got ${JSON.stringify(value)}`);
      return NaN;
    }
    return value;
  };
  const text = (name: string): string => {
    const value = root[name];
    if (typeof value !== 'string' || value === '') problems.push(`${name} must be a non-empty string`);
    return String(value);
  };
  const positive = (n: number) => n > 0;

  if (root.kind !== 'measured') {
    problems.push(
      root.kind === 'smoke'
        ? 'kind is "smoke": a smoke run proves the harness, not the capacity; run `npm run capacity` without --smoke on the target instance type'
        : `kind must be "measured", got ${JSON.stringify(root.kind)}`,
    );
  }
  const container = object(root.container, 'container');
  const capacity: Capacity = {
    kind: 'measured',
    date: text('date'),
    machine: text('machine'),
    setup: text('setup'),
    container: {
      cpus: number(container, 'container.cpus', (n) => Number.isInteger(n) && n >= 1, 'a whole number ≥ 1'),
      memoryLimitMiB: number(container, 'container.memoryLimitMiB', (n) => Number.isInteger(n) && n >= 128, 'a whole number ≥ 128'),
    },
    sloP99Ms: number(root, 'sloP99Ms', positive, '> 0'),
    headroom: number(root, 'headroom', (n) => n > 0 && n <= 1, 'above 0 and at most 1'),
    sustainableRequestsPerSecond: number(root, 'sustainableRequestsPerSecond', positive, '> 0 (no step held the SLO: the target would be ≤ 0)'),
    coresAtSustainable: number(root, 'coresAtSustainable', positive, '> 0'),
    peakRssMiBAtSustainable: number(root, 'peakRssMiBAtSustainable', positive, '> 0'),
    mix: text('mix'),
    steps: [],
  };
  if (Array.isArray(root.steps)) {
    capacity.steps = root.steps.map((step: unknown, i) => {
      const record = object(step, `steps[${i}]`);
      for (const figure of STEP_FIGURES) number(record, `steps[${i}].${figure}`, (n) => n >= 0, 'a number ≥ 0');
      return record as unknown as CapacityStep;
    });
    if (!capacity.steps.some((step) => step.offeredRate === capacity.sustainableRequestsPerSecond && step.failure === undefined)) {
      problems.push(`steps must hold the step at sustainableRequestsPerSecond (${capacity.sustainableRequestsPerSecond}) that held`);
    }
  } else {
    problems.push('steps must be an array');
  }
  if (problems.length > 0) throw new DeployInputError(`${where}: ${problems.join('; ')}`);
  return capacity;
}

/** The step at R_max (parseCapacity makes sure there is one). */
export function sustainableStep(capacity: Capacity): CapacityStep {
  return capacity.steps.find((step) => step.offeredRate === capacity.sustainableRequestsPerSecond && step.failure === undefined)!;
}
