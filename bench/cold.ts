/**
 * `npm run bench:cold`: how fast a new container answers an image it has never seen, with the
 * image in S3. s3rver runs behind a proxy that behaves like S3 seen from EC2 (20 ms to first
 * byte, 90 MB/s per connection) and counts what it forwards. Each measurement starts a fresh
 * server process with an empty cache folder:
 *
 *   single   start → /health 200, then info.json, a full-resolution tile, a low-zoom tile
 *   tile     start → /health 200, then a full-resolution tile first
 *   session  4 servers behind HAProxy, one viewer session (info.json + 60 tiles, 6 at a time)
 *
 * and reports times, bytes fetched from S3 and GETs. Results go to bench/results/cold-*.
 *
 *   npm run bench:cold                 3 rounds
 *   BENCH_ROUNDS=5 npm run bench:cold
 */
import { readFile } from 'node:fs/promises';
import { waitUntil } from '../scripts/cluster/wait.js';
import { COLD_IMAGE, ensureColdImage } from './images.js';
import { benchDataDir, writeReport } from './run.js';
import { Fleet, freshServer, mb, median, minus, round1, S3_FROM_EC2, SESSION_CONCURRENCY, TILE, timedGet, viewerRun } from './s3-fleet.js';
import { S3Store, type Traffic } from './s3-store.js';

const ID = COLD_IMAGE.name;
/** Level 0, in the middle of the image: no directory or tile near it was read before. */
const FULL_TILE = `${TILE * 32},${TILE * 24},${TILE},${TILE}/${TILE},${TILE}/0/default.jpg`;
/** Scale factor 32: the tile a viewer's first screen starts with. */
const LOW_TILE = `0,0,${TILE * 32},${TILE * 32}/${TILE},${TILE}/0/default.jpg`;
const SESSION_TILES = 60;
const REPLICAS = 4;

interface Step {
  name: string;
  status: number;
  /** Since /health first answered 200. */
  sinceHealthyMs: number;
  ms: number;
  s3: Traffic;
}

interface SingleRun {
  startToHealthyMs: number;
  steps: Step[];
}

interface SessionRun {
  requests: number;
  failed: number;
  wallMs: number;
  p50Ms: number;
  maxMs: number;
  slowest: string;
  s3: Traffic;
  /** Every request: path, status, ms (in the order they finished). */
  latencies: Array<{ path: string; status: number; ms: number }>;
}

/** Start → healthy, then `paths` one after another, each with the S3 traffic it caused. */
async function singleRun(store: S3Store, paths: Array<[string, string]>): Promise<SingleRun> {
  const { server, started, cleanUp } = await freshServer(store);
  try {
    const base = `http://127.0.0.1:${server.port}`;
    let healthyAt = 0;
    await waitUntil('/health to answer 200', 10_000, async () => {
      const ok = (await fetch(`${base}/health`).then((r) => r.status, () => 0)) === 200;
      healthyAt = performance.now();
      return ok;
    }, 2);
    const steps: Step[] = [];
    for (const [name, path] of paths) {
      const before = store.traffic();
      const { status, ms } = await timedGet(`${base}/iiif/3/${encodeURIComponent(ID)}/${path}`);
      steps.push({ name, status, ms: round1(ms), sinceHealthyMs: round1(performance.now() - healthyAt), s3: minus(store.traffic(), before) });
    }
    return { startToHealthyMs: round1(healthyAt - started), steps };
  } finally {
    await cleanUp();
  }
}

/** Four fresh servers behind HAProxy, one viewer session through it. */
async function sessionRun(store: S3Store): Promise<SessionRun> {
  const fleet = await Fleet.start(store, REPLICAS);
  try {
    const before = store.traffic();
    const begun = performance.now();
    const latencies = await viewerRun(`${fleet.url}/iiif/3/${encodeURIComponent(ID)}`, COLD_IMAGE, SESSION_TILES);
    const wallMs = performance.now() - begun;
    const slowest = latencies.reduce((a, b) => (b.ms > a.ms ? b : a));
    return {
      requests: latencies.length,
      failed: latencies.filter((l) => l.status !== 200).length,
      wallMs: round1(wallMs),
      p50Ms: round1(median(latencies.map((l) => l.ms))),
      maxMs: round1(slowest.ms),
      slowest: slowest.path,
      s3: minus(store.traffic(), before),
      latencies: latencies.map(({ path, status, ms }) => ({ path, status, ms: round1(ms) })),
    };
  } finally {
    await fleet.stop();
  }
}

function singleTable(runs: SingleRun[], objectBytes: number): string {
  const header = '| round | start → healthy ms | step | status | ms | since healthy ms | S3 GETs (ranged) | S3 MB |';
  const rows = runs.flatMap((run, i) =>
    run.steps.map(
      (step, j) =>
        `| ${j === 0 ? i + 1 : ''} | ${j === 0 ? run.startToHealthyMs : ''} | ${step.name} | ${step.status} | ${step.ms} | ${step.sinceHealthyMs} | ${step.s3.gets} (${step.s3.rangeGets}) | ${mb(step.s3.bytes)} |`,
    ),
  );
  return [`Object: ${mb(objectBytes)} MB.`, '', header, header.replace(/[^|]+/g, '---'), ...rows].join('\n');
}

function sessionTable(runs: SessionRun[]): string {
  const header = '| round | requests | failed | wall ms | p50 ms | max ms | slowest | S3 GETs (ranged) | S3 MB |';
  const rows = runs.map((r, i) => `| ${i + 1} | ${r.requests} | ${r.failed} | ${r.wallMs} | ${r.p50Ms} | ${r.maxMs} | ${r.slowest} | ${r.s3.gets} (${r.s3.rangeGets}) | ${mb(r.s3.bytes)} |`);
  return [header, header.replace(/[^|]+/g, '---'), ...rows].join('\n');
}

async function main(): Promise<void> {
  const rounds = Number(process.env.BENCH_ROUNDS ?? 3);
  const image = await ensureColdImage(benchDataDir(), (line) => console.log(line));
  const store = await S3Store.start();
  store.link = S3_FROM_EC2;
  try {
    const bytes = await readFile(image);
    await store.put(ID, bytes);
    const viewer: SingleRun[] = [];
    const tileFirst: SingleRun[] = [];
    const sessions: SessionRun[] = [];
    for (let round = 1; round <= rounds; round++) {
      viewer.push(await singleRun(store, [['info.json', 'info.json'], ['full-resolution tile', FULL_TILE], ['low-zoom tile', LOW_TILE]]));
      tileFirst.push(await singleRun(store, [['full-resolution tile', FULL_TILE], ['info.json', 'info.json']]));
      sessions.push(await sessionRun(store));
      console.log(`round ${round}: info.json ${viewer.at(-1)!.steps[0]!.sinceHealthyMs} ms, tile first ${tileFirst.at(-1)!.steps[0]!.sinceHealthyMs} ms, session ${mb(sessions.at(-1)!.s3.bytes)} MB`);
    }
    const markdown = [
      `S3: s3rver behind a proxy with ${S3_FROM_EC2.firstByteMs} ms to first byte and ${S3_FROM_EC2.bytesPerSecond / 1e6} MB/s per connection. Every run: fresh server processes, empty cache folders.`,
      '',
      '**One server, as a viewer opens the image** (info.json, then a full-resolution tile, then a low-zoom tile):',
      '',
      singleTable(viewer, bytes.length),
      '',
      '**One server, a full-resolution tile first:**',
      '',
      singleTable(tileFirst, bytes.length),
      '',
      `**${REPLICAS} servers behind HAProxy, one viewer session** (info.json + ${SESSION_TILES} tiles, ${SESSION_CONCURRENCY} at a time):`,
      '',
      sessionTable(sessions),
    ].join('\n');
    await writeReport('cold', 'Cold start from S3', { link: S3_FROM_EC2, objectBytes: bytes.length, viewer, tileFirst, sessions }, markdown, 'sequential requests with fetch on loopback, same machine');
  } finally {
    await store.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
