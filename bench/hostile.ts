/**
 * `npm run bench:hostile`: the hostile mixes of the hardening work run together against a fresh
 * server process with the container image's settings, on loopback, for a bounded time, while
 * /health and stored tiles are measured as a load balancer and a viewer would see them.
 *
 *   npm run bench:hostile                   60 s
 *   npm run bench:hostile -- --seconds 20
 *
 * The mixes: clients that never read large responses; 3,000 connections trickling a request body
 * (and a few hundred trickling headers); AVIF and GIF renders; rotations past the limits; tiles of a
 * JPEG of 2,090 scans; a flood of distinct 1×1 GIFs; X-Forwarded-Host pointing elsewhere; distinct
 * missing identifiers; the index page. Prints the figures and writes bench/results/hostile.json.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { connect } from 'node:net';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { startServerProcess, type ServerProcess } from '../scripts/cluster/server-process.js';
import { projectRoot } from '../src/paths.js';
import { threadPoolSize } from '../src/thread-pool.js';
import { manyScanJpeg } from './crafted.js';
import { shuffled, tilePaths } from './workloads.js';

/** The container image's settings (docker/Dockerfile) and the ECS task's proxy setting. */
const IMAGE_SETTINGS = {
  IIIF_RENDER_CONCURRENCY: '4',
  // Node 20 (this host) starts its pool before the entry runs: pass it, as the image does.
  UV_THREADPOOL_SIZE: String(threadPoolSize({ renderConcurrency: 4, largeRenderConcurrency: 1 })),
  IIIF_TRUST_PROXY: 'true',
  IIIF_ACCESS_LOG: 'false',
  NODE_ENV: 'production',
};
const MEMORY_LIMIT = 2 * 1024 ** 3;
/**
 * The longest a request may take before it is refused with 503: a wait for a render slot
 * (IIIF_QUEUE_TIMEOUT_MS) and, for a large body refused for memory after its render, the render
 * (IIIF_RENDER_TIMEOUT_SECONDS); the server's defaults.
 */
const REFUSAL_DEADLINE_MS = 10_000 + 20_000;
/** A request still unanswered after this long is a hang. */
const HANG_MS = 60_000;

interface Outcome {
  mix: string;
  status: number | 'error' | 'hang';
  ms: number;
  retryAfter: boolean;
}

const outcomes: Outcome[] = [];
let running = true;

const agent = new Agent({ keepAlive: true, maxSockets: 256 });

/** One request; never rejects: errors and hangs are outcomes too. */
function send(port: number, mix: string, path: string, headers: Record<string, string> = {}): Promise<Outcome & { body: Buffer; headers: Record<string, string | string[] | undefined> }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const done = (status: Outcome['status'], body = Buffer.alloc(0), responseHeaders: Record<string, string | string[] | undefined> = {}) => {
      const outcome = { mix, status, ms: performance.now() - started, retryAfter: responseHeaders['retry-after'] !== undefined };
      outcomes.push(outcome);
      resolve({ ...outcome, body, headers: responseHeaders });
    };
    const req = request({ host: '127.0.0.1', port, path, agent, headers }, (response) => {
      const chunks: Buffer[] = [];
      response.on('data', (chunk: Buffer) => chunks.push(chunk));
      response.on('end', () => done(response.statusCode ?? 0, Buffer.concat(chunks), response.headers));
      response.on('error', () => done('error'));
    });
    req.setTimeout(HANG_MS, () => {
      req.destroy();
      done('hang');
    });
    req.on('error', () => done('error'));
    req.end();
  });
}

const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs `client` in a loop until the run ends; `n` counts its requests. */
async function loop(client: (n: number) => Promise<unknown>): Promise<void> {
  for (let n = 0; running; n++) await client(n);
}

/** A hostile client does not wait out Retry-After, but does not spin either. */
async function afterRefusal(outcome: { status: Outcome['status'] }): Promise<void> {
  if (outcome.status !== 200) await pause(20);
}

interface Folder {
  root: string;
  tiles: string[];
}

async function prepareImages(): Promise<Folder> {
  const root = await mkdtemp(join(tmpdir(), 'iiif-hostile-'));
  await promisify(execFile)(process.execPath, [join(projectRoot(), 'dist', 'scripts', 'make-samples.js'), root]);
  // The measured file: 3960×3960, every scan a pass over 15.7 megapixels.
  await writeFile(join(root, 'scans.jpg'), await manyScanJpeg(3960, 3960));
  return { root, tiles: shuffled(tilePaths({ width: 6400, height: 4800 }, 256, 3)) };
}

/** Clients that never read: each holds one large response until the server cuts it off, then asks again. */
async function slowReader(port: number, n: number): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  // Timed from the connection, not from connect(): under 3,000 reconnecting tricklers the
  // listen backlog overflows and the kernel retries the SYN a second later, which is not the
  // server answering late.
  let started = performance.now();
  socket.once('connect', () => (started = performance.now()));
  socket.write(`GET /iiif/3/plasma.jpg/full/%5E10000,${2000 + (n % 500)}/0/default.png HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  const head = await new Promise<string>((resolve) => {
    socket.once('data', (chunk: Buffer) => resolve(chunk.toString('latin1', 0, Math.min(chunk.length, 1024))));
    socket.once('close', () => resolve(''));
  });
  socket.pause();
  const status = Number(head.split(' ')[1] ?? 0) || 'error';
  outcomes.push({ mix: 'slow readers (head)', status, ms: performance.now() - started, retryAfter: /\r\nretry-after:/i.test(head) });
  // Hold a response past the write timeout (30 s), as the measured attack did; after a refusal, ask again soon.
  const until = performance.now() + (status === 200 ? 40_000 : 1_000);
  while (running && performance.now() < until) await pause(250);
  socket.destroy();
}

/** Connections that send a request head, then one byte of body every 20 s; reopened when the server closes them. */
function trickler(port: number, head: string, closedAfter: number[]): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    const started = performance.now();
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
    socket.on('connect', () => socket.write(head));
    const timer = setInterval(() => socket.write('a'), 20_000);
    const stop = setInterval(() => {
      if (!running) socket.destroy();
    }, 250);
    socket.on('close', () => {
      clearInterval(timer);
      clearInterval(stop);
      if (running) closedAfter.push(performance.now() - started);
      resolve();
    });
  });
}

async function memorySampler(server: ServerProcess, samples: number[]): Promise<void> {
  while (running) {
    const status = await readFile(`/proc/${server.child.pid}/status`, 'utf8').catch(() => '');
    const match = /^VmRSS:\s+(\d+) kB/m.exec(status);
    if (match) samples.push(Number(match[1]) * 1024);
    await pause(250);
  }
}

function percentile(values: number[], p: number): number {
  if (values.length === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

const ms = (value: number) => `${Math.round(value)} ms`;

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { seconds: { type: 'string', default: '60' } } });
  const seconds = Number(values.seconds);
  if (!(seconds > 0 && seconds <= 600)) throw new Error('--seconds must be from 1 to 600');
  const folder = await prepareImages();
  const pyramids = await mkdtemp(join(tmpdir(), 'iiif-hostile-pyramids-'));
  const server = await startServerProcess({ ...IMAGE_SETTINGS, IIIF_FILE_ROOT: folder.root, IIIF_PYRAMID_DIR: pyramids });
  const { port } = server;
  let exitedDuringRun: number | string | undefined;
  void server.exited.then((code) => {
    if (running) exitedDuringRun = code;
  });
  const rss: number[] = [];
  const closedAfter: number[] = [];
  const headClosedAfter: number[] = [];
  let poisoned = 0;

  const clients: Array<Promise<unknown>> = [memorySampler(server, rss)];
  const every = (ms: number, probe: () => Promise<unknown>) => loop(async () => void (await Promise.all([probe(), pause(ms)])));
  // What the load balancer and a viewer see: /health 10 times a second, stored tiles 20 times.
  clients.push(every(100, () => send(port, '/health', '/health')));
  clients.push(every(50, () => send(port, 'stored tiles', `/iiif/3/mandelbrot.tif/${folder.tiles[Math.floor(Math.random() * folder.tiles.length)]}`)));
  // 1. Clients that never read large responses (about 80 MB of PNG each).
  for (let i = 0; i < 14; i++) clients.push(loop((n) => slowReader(port, i + 14 * n)));
  // 1b. 3,000 connections trickling a body, 300 trickling their headers, opened over 3 s.
  for (let i = 0; i < 3300; i++) {
    const head = i < 3000 ? 'POST /iiif/3/plasma.jpg/info.json HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n' : 'GET /health HTTP/1.1\r\nX-Slow: ';
    clients.push(
      pause((i / 3300) * 3000).then(() => loop(() => trickler(port, head, i < 3000 ? closedAfter : headClosedAfter))),
    );
  }
  // 2./3. Slow encoders: 8 AVIF clients and one GIF client, legal sizes and past-the-limit ones.
  for (let i = 0; i < 8; i++) {
    clients.push(
      loop(async (n) => {
        const path = n % 3 === 0 ? '/iiif/3/plasma.jpg/full/%5Emax/0/default.avif' : `/iiif/3/plasma.jpg/full/!1600,1600/${(i * 37 + n) % 360}/default.avif`;
        await afterRefusal(await send(port, 'avif', path));
      }),
    );
  }
  clients.push(
    loop(async (n) => {
      const path = n % 2 === 0 ? '/iiif/3/plasma.jpg/full/max/0/default.gif' : `/iiif/3/plasma.jpg/full/!700,700/${n % 360}/default.gif`;
      await afterRefusal(await send(port, 'gif', path));
    }),
  );
  // 2. Rotation past the limits.
  clients.push(loop(async (n) => afterRefusal(await send(port, 'rotated past the limits', `/iiif/3/plasma.jpg/full/%5E10000,2500/45.${n}/default.png`))));
  // 6. Tiles of the JPEG of 2,090 scans.
  for (let i = 0; i < 8; i++) {
    clients.push(loop(async (n) => afterRefusal(await send(port, 'many-scan JPEG tiles', `/iiif/3/scans.jpg/${(n % 15) * 256},${i * 256},256,256/256,/0/default.jpg`))));
  }
  // 7. Distinct 1×1 GIFs.
  for (let i = 0; i < 2; i++) {
    clients.push(loop((n) => send(port, '1×1 GIFs', `/iiif/3/plasma.jpg/${(i * 100_000 + n) % 2400},${Math.floor((i * 100_000 + n) / 2400) % 1600},1,1/1,1/0/default.gif`)));
  }
  // 4. X-Forwarded-Host pointing elsewhere.
  clients.push(
    every(20, async () => {
      const answer = await send(port, 'X-Forwarded-Host', '/iiif/3/plasma.jpg/info.json', { host: 'images.example.org', 'x-forwarded-host': 'attacker.example', 'x-forwarded-proto': 'https' });
      if (answer.body.includes('attacker') || String(answer.headers.link ?? '').includes('attacker')) poisoned++;
    }),
  );
  // 8. Distinct missing identifiers, and the index page.
  clients.push(loop((n) => send(port, 'missing identifiers', `/iiif/3/missing-${n}.jpg/info.json`)));
  clients.push(every(100, () => send(port, 'index page', '/')));

  const [loadAtStart = 0] = loadavg();
  const started = performance.now();
  await pause(seconds * 1000);
  running = false;
  const ran = (performance.now() - started) / 1000;
  await Promise.race([Promise.all(clients), pause(HANG_MS + 5_000)]);
  // The server's own view of its event loop over the run (prom-client resets it per scrape; nothing else scraped).
  const metrics = (await send(port, 'metrics', '/metrics')).body.toString();
  const metric = (name: string) => Number(new RegExp(`^${name} (\\S+)`, 'm').exec(metrics)?.[1] ?? NaN);
  const eventLoop = { p99Ms: metric('nodejs_eventloop_lag_p99_seconds') * 1000, maxMs: metric('nodejs_eventloop_lag_max_seconds') * 1000 };
  const cpuSeconds = metric('process_cpu_seconds_total');
  agent.destroy();
  server.child.kill('SIGKILL');
  await rm(folder.root, { recursive: true, force: true });
  await rm(pyramids, { recursive: true, force: true });

  const byMix = new Map<string, Outcome[]>();
  for (const outcome of outcomes) if (outcome.mix !== 'metrics') byMix.set(outcome.mix, [...(byMix.get(outcome.mix) ?? []), outcome]);
  const rows = [...byMix].map(([mix, list]) => {
    const statuses: Record<string, number> = {};
    for (const { status } of list) statuses[status] = (statuses[status] ?? 0) + 1;
    const times = list.map((o) => o.ms);
    return { mix, requests: list.length, statuses, p50: percentile(times, 50), p99: percentile(times, 99), max: Math.max(...times) };
  });
  const refused = outcomes.filter((o) => o.status === 503);
  const report = {
    date: new Date().toISOString(),
    seconds: Math.round(ran),
    cpus: cpus().length,
    settings: IMAGE_SETTINGS,
    loadAverageAtStart: loadAtStart,
    serverCpuSeconds: cpuSeconds,
    eventLoop,
    peakRssBytes: Math.max(0, ...rss),
    memoryLimitBytes: MEMORY_LIMIT,
    exitedDuringRun: exitedDuringRun ?? null,
    serverErrors: outcomes.filter((o) => typeof o.status === 'number' && o.status >= 500 && o.status !== 503).length,
    hangs: outcomes.filter((o) => o.status === 'hang').length,
    refusedWithoutRetryAfter: refused.filter((o) => !o.retryAfter).length,
    slowest503Ms: Math.max(0, ...refused.map((o) => o.ms)),
    slowestOther4xxMs: Math.max(0, ...outcomes.filter((o) => typeof o.status === 'number' && o.status >= 400 && o.status < 500).map((o) => o.ms)),
    poisonedResponses: poisoned,
    tricklersClosedAfterMs: { count: closedAfter.length, p50: percentile(closedAfter, 50), max: Math.max(0, ...closedAfter) },
    headTricklersClosedAfterMs: { count: headClosedAfter.length, p50: percentile(headClosedAfter, 50), max: Math.max(0, ...headClosedAfter) },
    mixes: rows,
  };
  const health = rows.find((r) => r.mix === '/health');
  const tiles = rows.find((r) => r.mix === 'stored tiles');
  const checks: Array<[string, boolean, string]> = [
    ['/health under 250 ms', (health?.max ?? Infinity) < 250, `max ${ms(health?.max ?? 0)}, p99 ${ms(health?.p99 ?? 0)}`],
    ['RSS under 2 GiB', report.peakRssBytes < MEMORY_LIMIT, `peak ${Math.round(report.peakRssBytes / 2 ** 20)} MiB`],
    ['stored tiles p99 < 100 ms', (tiles?.p99 ?? Infinity) < 100, `p50 ${ms(tiles?.p50 ?? 0)}, p99 ${ms(tiles?.p99 ?? 0)}, max ${ms(tiles?.max ?? 0)}`],
    ['every 503 has Retry-After', report.refusedWithoutRetryAfter === 0, `${refused.length} refusals`],
    ['503s within their deadline', report.slowest503Ms < REFUSAL_DEADLINE_MS, `p99 ${ms(percentile(refused.map((o) => o.ms), 99))}, slowest ${ms(report.slowest503Ms)} (deadline ${REFUSAL_DEADLINE_MS} ms: queue wait + render)`],
    ['no 500s', report.serverErrors === 0, String(report.serverErrors)],
    ['no hangs', report.hangs === 0, String(report.hangs)],
    ['no poisoned URLs', poisoned === 0, String(poisoned)],
    ['never restarted', exitedDuringRun === undefined, exitedDuringRun === undefined ? 'running throughout' : `exited with ${exitedDuringRun}`],
  ];
  const out = join(projectRoot(), 'bench', 'results');
  await mkdir(out, { recursive: true });
  await writeFile(join(out, 'hostile.json'), `${JSON.stringify({ ...report, checks }, null, 2)}\n`);
  console.log(`hostile load for ${report.seconds} s on ${report.cpus} cores (load average ${loadAtStart.toFixed(1)} at start), settings ${JSON.stringify(IMAGE_SETTINGS)}`);
  console.log(`server: ${cpuSeconds.toFixed(1)} CPU s, event loop lag p99 ${ms(eventLoop.p99Ms)}, max ${ms(eventLoop.maxMs)}`);
  console.log('| mix | requests | statuses | p50 | p99 | max |\n|---|---|---|---|---|---|');
  for (const row of rows) console.log(`| ${row.mix} | ${row.requests} | ${JSON.stringify(row.statuses)} | ${ms(row.p50)} | ${ms(row.p99)} | ${ms(row.max)} |`);
  console.log(`body tricklers closed: ${closedAfter.length}, after p50 ${ms(report.tricklersClosedAfterMs.p50)}, max ${ms(report.tricklersClosedAfterMs.max)}; header tricklers: ${headClosedAfter.length}, max ${ms(report.headTricklersClosedAfterMs.max)}`);
  for (const [name, ok, detail] of checks) console.log(`${ok ? 'PASS' : 'FAIL'}  ${name}: ${detail}`);
  if (checks.some(([, ok]) => !ok)) process.exitCode = 1;
}

main().then(
  // Whatever a client left behind (a socket the server never closed) must not keep the run alive.
  () => process.exit(),
  (error: unknown) => {
    process.stderr.write(`bench:hostile: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
