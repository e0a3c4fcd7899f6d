import type { Command } from './command.js';

/** The benchmarks need dev dependencies a container does not have: loaded only when asked for. */
async function load<T>(module: Promise<T>): Promise<T> {
  return module.catch((error: unknown) => {
    throw new Error(`the benchmarks need a source checkout with dev dependencies (npm ci): ${error instanceof Error ? error.message : String(error)}`);
  });
}

export const benchCommand: Command = {
  summary: 'run the load benchmarks (W1–W9) against fresh server processes and write bench/results/',
  usage: '[W1 W2 …]',
  help: [
    'Workloads: W1 deep-zoom tiles, W2 the same on a plain JPEG, W3 info.json, W4 thumbnails,',
    'W5 hot tiles, W6–W9 tiles of pyramids made by Debian vips and ImageMagick (all when none',
    'are named). Set BENCH_TARGET=http://host:port to measure a',
    'running server or load balancer instead. Needs a source checkout with dev dependencies',
    '(npm ci); the figures and method are in bench/README.md.',
  ].join('\n'),
  options: {},
  positionals: [],
  variadic: true,
  async run({ positionals }) {
    await (await load(import('../../bench/run.js'))).runBenchmarks(positionals);
  },
};

export const capacityCommand: Command = {
  summary: 'measure what one container sustains and write deploy/capacity.json (the scaling thresholds)',
  usage: '[--cpus 1 --memory-mib 2048 --slo-ms 200 --headroom 0.7 --start N --max-rate N --hold 15 --smoke]',
  help: 'Options and method: deploy/README.md ("Measure on the target instance type") and bench/README.md.',
  options: {},
  positionals: [],
  passThrough: true,
  async run({ positionals }) {
    await (await load(import('../../bench/capacity.js'))).runCapacity(positionals);
  },
};
