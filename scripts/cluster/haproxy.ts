import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './free-port.js';
import { waitUntil } from './wait.js';

const BACKEND = 'replicas';

/** A replica as the load balancer sees it: a name and a port on 127.0.0.1. */
export interface Backend {
  name: string;
  port: number;
}

// The same health check for servers in the file and servers added at run time: GET /health
// every second, DOWN after 2 failures (≈ 2 s), UP again after one success. Live traffic is
// watched too, at the connection level only (a deliberate 503 from admission control must not
// eject a busy replica): 3 connection errors in a row (a killed replica behind docker-proxy
// accepts and then resets) mark it DOWN at once instead of after the next health checks.
const serverOptions = (port: number): string =>
  `127.0.0.1:${port} check inter 1s fall 2 rise 1 observe layer4 error-limit 3 on-error mark-down`;

/**
 * HAProxy's configuration for replicas on 127.0.0.1: round robin, health-checked on /health,
 * a refused connection retried on another replica (`option redispatch 1`), the replica's name in
 * each answer's `x-served-by`, and an admin socket for adding and removing replicas without a reload.
 */
export function haproxyConfig({ port, adminSocket, backends }: { port: number; adminSocket: string; backends: Backend[] }): string {
  return [
    'global',
    `  stats socket ${adminSocket} mode 600 level admin`,
    '  maxconn 4096',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout http-keep-alive 10s',
    '  retries 3',
    '  option redispatch 1',
    'frontend iiif',
    `  bind 127.0.0.1:${port}`,
    `  default_backend ${BACKEND}`,
    `backend ${BACKEND}`,
    '  balance roundrobin',
    '  option httpchk GET /health',
    '  http-check expect status 200',
    // Which replica answered, for benchmarks that follow one replica's share of the traffic.
    '  http-response set-header x-served-by %s',
    ...backends.map(({ name, port: backendPort }) => `  server ${name} ${serverOptions(backendPort)}`),
    '',
  ].join('\n');
}

export type ServerStatus = 'UP' | 'DOWN' | 'MAINT' | 'NOLB' | 'DRAIN' | string;

/** A running HAProxy (Debian's 2.6) in front of the replicas, driven through its admin socket. */
export class LoadBalancer {
  private constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly process: ChildProcess,
    private readonly stderr: () => string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private get adminSocket(): string {
    return join(this.dir, 'admin.sock');
  }

  /** Starts HAProxy on a free loopback port and resolves once its admin socket answers. */
  static async start(backends: Backend[]): Promise<LoadBalancer> {
    const dir = await mkdtemp(join(tmpdir(), 'iiif-haproxy-'));
    const port = await freePort();
    const file = join(dir, 'haproxy.cfg');
    await writeFile(file, haproxyConfig({ port, adminSocket: join(dir, 'admin.sock'), backends }));
    const child = spawn('haproxy', ['-db', '-f', file], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (chunk) => (stderr += chunk));
    const balancer = new LoadBalancer(port, dir, child, () => stderr);
    try {
      await waitUntil('HAProxy to answer on its admin socket', 10_000, async () => {
        if (child.exitCode !== null) throw new Error(`haproxy exited with ${child.exitCode}: ${stderr.trim()}`);
        return (await balancer.command('show info').catch(() => '')).includes('Name: HAProxy');
      });
    } catch (error) {
      await balancer.stop();
      throw error;
    }
    return balancer;
  }

  /** One admin-socket command; resolves with HAProxy's whole answer. */
  async command(line: string): Promise<string> {
    const socket = connect(this.adminSocket);
    socket.setTimeout(5_000, () => socket.destroy(new Error(`haproxy did not answer "${line}" within 5 s`)));
    let answer = '';
    socket.on('data', (chunk) => (answer += chunk));
    await once(socket, 'connect');
    socket.end(`${line}\n`);
    await once(socket, 'close');
    return answer;
  }

  /** Each replica's status (UP, DOWN, MAINT...), from `show stat`. */
  async statuses(): Promise<Map<string, ServerStatus>> {
    const [header, ...rows] = (await this.command('show stat')).trim().split('\n');
    const columns = (header ?? '').replace(/^# /, '').split(',');
    const [proxy, server, status] = ['pxname', 'svname', 'status'].map((name) => columns.indexOf(name));
    const result = new Map<string, ServerStatus>();
    for (const row of rows) {
      const cells = row.split(',');
      const name = cells[server!]!;
      if (cells[proxy!] === BACKEND && name !== 'BACKEND') result.set(name, cells[status!]!.split(' ')[0]!);
    }
    return result;
  }

  async waitForStatus(name: string, wanted: ServerStatus, deadlineMs = 15_000): Promise<void> {
    await waitUntil(`replica ${name} to be ${wanted} in HAProxy`, deadlineMs, async () => (await this.statuses()).get(name) === wanted);
  }

  /** Adds a replica at run time (no reload, no dropped connections) and waits for it to be UP. */
  async add({ name, port }: Backend): Promise<void> {
    for (const line of [`add server ${BACKEND}/${name} ${serverOptions(port)}`, `enable health ${BACKEND}/${name}`, `enable server ${BACKEND}/${name}`]) {
      const answer = (await this.command(line)).trim();
      if (answer !== '' && !/^New server registered/.test(answer)) throw new Error(`haproxy: "${line}" → ${answer}`);
    }
    await this.waitForStatus(name, 'UP');
  }

  /** Removes a replica once HAProxy holds no connection to it (waits until then, bounded). */
  async remove(name: string): Promise<void> {
    await this.command(`set server ${BACKEND}/${name} state maint`);
    await this.command(`shutdown sessions server ${BACKEND}/${name}`);
    await waitUntil(`HAProxy to delete replica ${name}`, 15_000, async () =>
      /Server deleted/.test(await this.command(`del server ${BACKEND}/${name}`)),
    );
  }

  async stop(): Promise<void> {
    if (this.process.exitCode === null && this.process.signalCode === null) {
      this.process.kill('SIGTERM');
      await once(this.process, 'exit');
    }
    await rm(this.dir, { recursive: true, force: true });
  }

  /** What HAProxy wrote to stderr (its alerts and warnings), for error messages. */
  get log(): string {
    return this.stderr();
  }
}
