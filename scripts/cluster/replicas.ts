import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { projectRoot } from '../../src/paths.js';
import { startServerProcess } from './server-process.js';
import { healthy, waitUntil } from './wait.js';

const exec = promisify(execFile);

/** One server replica listening on 127.0.0.1:port. */
export interface Replica {
  readonly name: string;
  readonly port: number;
  /** SIGTERM, then waits for the drain to end; resolves with the exit code and how long it took. */
  stop(): Promise<{ exitCode: number | string; ms: number }>;
  /** SIGKILL: gone at once, no drain. */
  kill(): Promise<void>;
}

/** Starts identical replicas: containers of one image, or server processes when there is no engine. */
export interface ReplicaPool {
  readonly kind: 'containers' | 'processes';
  /** Starts a replica and resolves once its /health answers 200. */
  start(name: string): Promise<Replica>;
  /** Removes whatever replicas of this pool are still there. */
  cleanUp(): Promise<void>;
}

const START_MS = 30_000;

export async function docker(...args: string[]): Promise<string> {
  try {
    const { stdout } = await exec('docker', args, { maxBuffer: 64 * 1024 * 1024, timeout: 15 * 60_000 });
    return stdout.trim();
  } catch (error) {
    const { stderr, message } = error as { stderr?: string; message: string };
    throw new Error(`docker ${args[0]} failed: ${(stderr || message).trim().split('\n').slice(-5).join(' | ')}`);
  }
}

export async function dockerAvailable(): Promise<boolean> {
  return docker('info', '--format', '{{.ServerVersion}}').then(
    () => true,
    () => false,
  );
}

/** The host's locally added CA certificates (Debian's folder), for npm behind a TLS-intercepting proxy. */
async function localCaCertificates(folder = '/usr/local/share/ca-certificates'): Promise<string> {
  const names = await readdir(folder).catch(() => [] as string[]);
  const pems = await Promise.all(names.filter((name) => name.endsWith('.crt')).map((name) => readFile(join(folder, name), 'utf8')));
  return pems.join('\n');
}

async function gitRevision(): Promise<string> {
  return exec('git', ['rev-parse', 'HEAD'], { cwd: projectRoot() }).then(
    ({ stdout }) => stdout.trim(),
    () => 'unknown',
  );
}

/**
 * Builds docker/Dockerfile as `tag` on `baseImage` (the production default is
 * node:22-bookworm-slim; tests pass the locally built one), passing the host's local CA
 * certificates and the git revision. The legacy builder needs nothing from a registry.
 */
export async function buildImage(tag: string, baseImage: string): Promise<void> {
  const args = ['build', '--pull=false', '-f', join(projectRoot(), 'docker', 'Dockerfile'), '-t', tag];
  args.push('--build-arg', `NODE_IMAGE=${baseImage}`, '--build-arg', `REVISION=${await gitRevision()}`);
  const certificates = await localCaCertificates();
  if (certificates) args.push('--build-arg', `EXTRA_CA_CERTS=${certificates}`);
  process.env.DOCKER_BUILDKIT = '0';
  await docker(...args, projectRoot());
}

/** Containers of one image, each on its own ephemeral loopback port (ECS `hostPort: 0`). */
export class ContainerPool implements ReplicaPool {
  readonly kind = 'containers';
  private readonly label: string;

  constructor(
    private readonly image: string,
    private readonly env: Record<string, string> = {},
    /** CPU limit per container (`docker run --cpus`), like an ECS task's cpu; unlimited when omitted. */
    private readonly cpus?: number,
  ) {
    this.label = `iiif-elastic.pool=${process.pid}-${Date.now()}`;
  }

  async start(name: string): Promise<Replica> {
    const runArgs = Object.entries(this.env).flatMap(([key, value]) => ['-e', `${key}=${value}`]);
    if (this.cpus !== undefined) runArgs.push('--cpus', String(this.cpus));
    // --read-only: the image must run with a read-only root (the cache volume is the one exception).
    await docker('run', '-d', '--pull', 'never', '--read-only', '--name', name, '--label', this.label, '-p', '127.0.0.1:0:3000', ...runArgs, this.image);
    const address = (await docker('port', name, '3000/tcp')).split('\n')[0] ?? '';
    const port = Number(address.slice(address.lastIndexOf(':') + 1));
    await waitUntil(`container ${name} to answer /health`, START_MS, async () => {
      if ((await docker('inspect', '-f', '{{.State.Running}}', name)) !== 'true') {
        throw new Error(`container ${name} stopped: ${await docker('logs', '--tail', '5', name)}`);
      }
      return healthy(port);
    });
    return {
      name,
      port,
      stop: async () => {
        const started = Date.now();
        await docker('stop', '-t', '60', name);
        const ms = Date.now() - started;
        const exitCode = Number(await docker('inspect', '-f', '{{.State.ExitCode}}', name));
        await docker('rm', '-f', '-v', name);
        return { exitCode, ms };
      },
      kill: async () => {
        await docker('kill', '--signal', 'KILL', name);
        await docker('rm', '-f', '-v', name);
      },
    };
  }

  async cleanUp(): Promise<void> {
    const ids = (await docker('ps', '-aq', '--filter', `label=${this.label}`)).split('\n').filter(Boolean);
    if (ids.length > 0) await docker('rm', '-f', '-v', ...ids);
  }
}

/** Server processes on ephemeral ports (`PORT=0`): the same arrangement where no engine runs. */
export class ProcessPool implements ReplicaPool {
  readonly kind = 'processes';
  private readonly running = new Set<import('node:child_process').ChildProcess>();

  constructor(private readonly env: Record<string, string> = {}) {}

  async start(name: string): Promise<Replica> {
    const server = await startServerProcess(this.env, START_MS);
    this.running.add(server.child);
    void server.exited.then(() => this.running.delete(server.child));
    return {
      name,
      port: server.port,
      stop: async () => {
        const started = Date.now();
        server.child.kill('SIGTERM');
        const exitCode = await server.exited;
        return { exitCode, ms: Date.now() - started };
      },
      kill: async () => {
        server.child.kill('SIGKILL');
        await server.exited;
      },
    };
  }

  async cleanUp(): Promise<void> {
    for (const child of this.running) child.kill('SIGKILL');
  }
}
