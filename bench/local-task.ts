/**
 * One task of the deployment run locally as ECS runs it (deploy/src/local-run.ts): fresh
 * task-scoped volumes, the task's limits and environment, read-only root, on loopback ports of
 * its own. The ECS test (test/docker/ecs-task.system.test.ts) and the capacity run start the image
 * through here.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { docker } from '../scripts/cluster/replicas.js';
import { freePort } from '../scripts/cluster/free-port.js';
import { healthy, waitUntil } from '../scripts/cluster/wait.js';
import { dockerRunArgs, type TaskDefinition } from '../deploy/src/local-run.js';

export interface LocalTask {
  name: string;
  /** The public port (PORT) and the private one (IIIF_METRICS_PORT). */
  url: string;
  metricsUrl: string;
  /** The container's init process as the host sees it: its process tree is the task's CPU and memory. */
  pid: number;
  /** The host folder behind each of the task's volumes, by the task's volume name. */
  volumeFolders: Record<string, string>;
  /** Why the container is no longer running (exit code, OOM kill), or undefined while it runs. */
  stopped(): Promise<string | undefined>;
  logs(): Promise<string>;
  /** Removes the container and its volumes, as ECS does with a stopped task's task-scoped volumes. */
  remove(): Promise<void>;
}

/** The container ended before it answered /health. */
export class TaskExited extends Error {
  constructor(
    readonly exitCode: number,
    readonly logs: string,
  ) {
    super(`the task exited with code ${exitCode} before it was healthy: ${logs.trim().split('\n').slice(-3).join(' | ')}`);
    this.name = 'TaskExited';
  }
}

let started = 0;

/** This process's hard limit on open files: the local engine, started alike, can grant no more. */
async function openFilesLimit(): Promise<number | undefined> {
  const limits = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  const hard = /^Max open files\s+\S+\s+(\d+)/m.exec(limits)?.[1];
  return hard === undefined ? undefined : Number(hard);
}

/**
 * Starts `task` from `image` and resolves once /health answers 200. `startMs` only bounds a
 * hang: a loaded machine may take long to start a container, and nothing depends on how long.
 */
export async function startLocalTask(task: TaskDefinition, options: { image: string; environment: Record<string, string>; startMs?: number }): Promise<LocalTask> {
  const name = `iiif-task-${process.pid}-${++started}`;
  const volumes = Object.fromEntries(task.volumes.map((volume) => [volume.name, `${name}-${volume.name}`]));
  const remove = async () => {
    await docker('rm', '--force', '--volumes', name).catch(() => undefined);
    await Promise.all(Object.values(volumes).map((volume) => docker('volume', 'rm', '--force', volume).catch(() => undefined)));
  };
  for (const volume of Object.values(volumes)) await docker('volume', 'create', '--driver', 'local', volume);
  const [port, metricsPort] = [await freePort(), await freePort()];
  const environment = { ...options.environment, HOST: '127.0.0.1', PORT: String(port), IIIF_METRICS_PORT: String(metricsPort) };
  // The server's JSON lines are on stdout, a start-up failure's one line on stderr: both, as CloudWatch gets them.
  const logs = () =>
    promisify(execFile)('docker', ['logs', name], { maxBuffer: 64 * 1024 * 1024 }).then(
      ({ stdout, stderr }) => stdout + stderr,
      (error: Error) => error.message,
    );
  const stopped = async (): Promise<string | undefined> => {
    const [running, exitCode, oomKilled] = (await docker('inspect', '--format', '{{.State.Running}} {{.State.ExitCode}} {{.State.OOMKilled}}', name)).split(' ');
    if (running === 'true') return undefined;
    return oomKilled === 'true' ? `OOM-killed (exit code ${exitCode})` : `exited with code ${exitCode}`;
  };
  try {
    await docker(...dockerRunArgs(task, { image: options.image, name, volumes, environment, maxOpenFiles: await openFilesLimit() }));
    await waitUntil(`task ${name} to answer /health`, options.startMs ?? 5 * 60_000, async () => {
      if (await stopped()) throw new TaskExited(Number(await docker('inspect', '--format', '{{.State.ExitCode}}', name)), await logs());
      return healthy(port);
    });
    const pid = Number(await docker('inspect', '--format', '{{.State.Pid}}', name));
    const volumeFolders = Object.fromEntries(
      await Promise.all(Object.entries(volumes).map(async ([taskVolume, volume]) => [taskVolume, await docker('volume', 'inspect', '--format', '{{.Mountpoint}}', volume)])),
    );
    return { name, url: `http://127.0.0.1:${port}`, metricsUrl: `http://127.0.0.1:${metricsPort}`, pid, volumeFolders, stopped, logs, remove };
  } catch (error) {
    await remove();
    throw error;
  }
}
