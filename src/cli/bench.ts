import type { Command } from './command.js';

export const benchCommand: Command = {
  summary: 'run the load benchmarks (W1–W5) against fresh server processes and write bench/results/',
  usage: '[W1 W2 …]',
  help: [
    'Workloads: W1 deep-zoom tiles, W2 the same on a plain JPEG, W3 info.json, W4 thumbnails,',
    'W5 hot tiles (all when none are named). Set BENCH_TARGET=http://host:port to measure a',
    'running server or load balancer instead. Needs a source checkout with dev dependencies',
    '(npm ci); the figures and method are in bench/README.md.',
  ].join('\n'),
  options: {},
  positionals: [],
  variadic: true,
  async run({ positionals }) {
    // Loaded only when asked for: the benchmarks need dev dependencies a container does not have.
    const bench = await import('../../bench/run.js').catch((error: unknown) => {
      throw new Error(`the benchmarks need a source checkout with dev dependencies (npm ci): ${error instanceof Error ? error.message : String(error)}`);
    });
    await bench.runBenchmarks(positionals);
  },
};
