/**
 * `npm run bench:compare`: our server and iipsrv side by side on the same images, URLs (IIIF
 * 2.1 syntax, which iipsrv speaks), load generator and machine, alternating which goes first.
 * Prints and saves each workload's ratio ours / iipsrv, per request and per CPU core. The JP2
 * workload (jp2-compare.ts) measures both from a cold process on an archival JPEG 2000.
 *
 *   npm run bench:compare              every workload
 *   npm run bench:compare -- W1 JP2    some of them
 */
import { availableParallelism } from 'node:os';
import { IIPSRV_PROBE, startIipsrv } from './iipsrv.js';
import { ensureBenchImages, PLAIN_JPEGS, PYRAMIDS } from './images.js';
import { compareJp2, JP2_WORKLOAD } from './jp2-compare.js';
import { benchDataDir, describeMeasurement, runWorkload, startOurs, workloads, writeReport, type Measurement } from './run.js';

interface Pair {
  workload: string;
  connections: number;
  /** The run with the median req/s per core, of each server. */
  ours: Measurement;
  iipsrv: Measurement;
  ratio: number;
  ratioPerCore: number;
  runs: Array<{ ours: Measurement; iipsrv: Measurement }>;
}

/**
 * Runs per workload and server (BENCH_REPEAT, default 3): on a 2-core machine shared with the
 * load generator one short run's CPU per request varies by ±30 %, the median of three far less.
 */
const repeats = Number(process.env.BENCH_REPEAT ?? 3);

/** The measurement with the median req/s per core. */
function median(measurements: Measurement[]): Measurement {
  const sorted = [...measurements].sort((a, b) => a.requestsPerSecondPerCore - b.requestsPerSecondPerCore);
  return sorted[Math.floor(sorted.length / 2)]!;
}

async function main(): Promise<void> {
  if (!Number.isInteger(repeats) || repeats < 1) throw new Error(`BENCH_REPEAT must be a whole number ≥ 1, not "${process.env.BENCH_REPEAT}"`);
  const chosen = new Set(process.argv.slice(2));
  if (chosen.size === 0 || [...chosen].some((name) => name !== JP2_WORKLOAD)) await compareWorkloads(chosen);
  if (chosen.size === 0 || chosen.has(JP2_WORKLOAD)) await compareJp2(benchDataDir());
}

/** W1–W5 (all when `chosen` is empty), each pair of runs repeated and the medians compared. */
async function compareWorkloads(chosen: Set<string>): Promise<void> {
  const dataDir = await ensureBenchImages(benchDataDir(), (line) => console.log(line));
  // iipsrv cannot read a plain JPEG: for W2 it gets pyramids of the same size, which is what its
  // users convert their JPEGs to before serving them.
  const ours = workloads({ prefix: '/iiif/2', syntax: 2, plainImages: PLAIN_JPEGS });
  const theirs = workloads({ prefix: '/iiif', syntax: 2, plainImages: PYRAMIDS });
  const pairs: Pair[] = [];
  let oursFirst = true;
  for (const [index, workload] of ours.entries()) {
    if (chosen.size > 0 && !chosen.has(workload.name)) continue;
    for (const connections of workload.connections.filter((c) => c <= 32)) {
      const runOurs = () => runWorkload(workload, connections, () => startOurs(dataDir, workload.env));
      const runTheirs = () => runWorkload(theirs[index]!, connections, () => startIipsrv(dataDir, availableParallelism()), IIPSRV_PROBE);
      const runs: Array<{ ours: Measurement; iipsrv: Measurement }> = [];
      for (let attempt = 0; attempt < repeats; attempt++) {
        const [a, b] = oursFirst ? [await runOurs(), await runTheirs()] : [await runTheirs(), await runOurs()].reverse();
        oursFirst = !oursFirst;
        runs.push({ ours: a!, iipsrv: b! });
        console.log(`ours   ${describeMeasurement(a!)}\niipsrv ${describeMeasurement(b!)}`);
      }
      const ours = median(runs.map((run) => run.ours));
      const iipsrv = median(runs.map((run) => run.iipsrv));
      const pair = {
        workload: workload.name,
        connections,
        ours,
        iipsrv,
        ratio: round(ours.requestsPerSecond / iipsrv.requestsPerSecond),
        ratioPerCore: round(ours.requestsPerSecondPerCore / iipsrv.requestsPerSecondPerCore),
        runs,
      };
      console.log(`→ median of ${repeats}: ${pair.ratio}× req/s, ${pair.ratioPerCore}× req/s per core\n`);
      pairs.push(pair);
    }
  }
  const header = '| workload | conns | ours req/s | iipsrv req/s | ratio | ours req/s/core | iipsrv req/s/core | ratio per core | ours p99 ms | iipsrv p99 ms | ours errors | iipsrv errors | ours peak RSS MiB | iipsrv peak RSS MiB | ours /health p99 / max ms | iipsrv probe p99 / max ms |';
  const rows = pairs.map(
    (p) =>
      `| ${p.workload} | ${p.connections} | ${p.ours.requestsPerSecond} | ${p.iipsrv.requestsPerSecond} | ${p.ratio} | ${p.ours.requestsPerSecondPerCore} | ${p.iipsrv.requestsPerSecondPerCore} | ${p.ratioPerCore} | ${p.ours.latencyMs.p99} | ${p.iipsrv.latencyMs.p99} | ${p.ours.errors + p.ours.non2xx} | ${p.iipsrv.errors + p.iipsrv.non2xx} | ${p.ours.peakRssMiB} | ${p.iipsrv.peakRssMiB} | ${p.ours.probe.p99Ms} / ${p.ours.probe.maxMs} | ${p.iipsrv.probe.p99Ms} / ${p.iipsrv.probe.maxMs} |`,
  );
  const notes = `Each row: the run with the median req/s per core of ${repeats} per server, alternating which server goes first. iiif-processor: not installed, not measured. iipsrv: Debian iipimage-server 1.1 under lighttpd mod_fastcgi, one process per core. W2 for iipsrv reads the pyramidal TIFFs of W1 (it cannot read JPEG). W6–W9 read pyramids made by Debian's vips 8.14 and ImageMagick (bench/images.ts), the same files for both servers. Probe: one request at a time every 25 ms during the load, our /health and iipsrv's FastCGI endpoint without arguments (it has no health route; a 400 help page that waits for a free worker like any request).`;
  await writeReport('compare', 'Ours vs iipsrv', { pairs }, `${notes}\n\n${[header, header.replace(/[^|]+/g, '---'), ...rows].join('\n')}`);
}

const round = (value: number) => Math.round(value * 100) / 100;

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
