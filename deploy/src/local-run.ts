/**
 * The task definition as `docker run` arguments: how the tests and the capacity run start the
 * image the way ECS does (task-level CPU and memory limits, read-only root, fresh volumes at
 * the task's mount points, init process, ulimits, stop timeout, labels, its environment).
 *
 * Two differences. On purpose: the container shares the host's network instead of a bridge
 * with dynamic ports. Then it reaches an S3 stand-in on the host's loopback, and no request
 * passes through Docker's userland port proxy, whose CPU a measurement would miss. The caller
 * gives the ports (and HOST) through `environment`. Forced: a ulimit above what the local
 * engine may grant cannot be set, so ulimits are capped at `maxOpenFiles`.
 */

/** What a local run reads of a task definition (the shape deploy/src/ecs.ts makes and the ECS API takes). */
export interface TaskDefinition {
  cpu: string;
  memory: string;
  volumes: Array<{ name: string }>;
  containerDefinitions: Array<{
    cpu: number;
    memoryReservation: number;
    readonlyRootFilesystem: boolean;
    linuxParameters: { initProcessEnabled: boolean };
    stopTimeout: number;
    ulimits: Array<{ name: string; softLimit: number; hardLimit: number }>;
    mountPoints: Array<{ sourceVolume: string; containerPath: string; readOnly: boolean }>;
    dockerLabels: Record<string, string>;
    environment: Array<{ name: string; value: string }>;
  }>;
}

export interface LocalRunOptions {
  /** Image reference (a locally built tag). */
  image: string;
  name: string;
  /** The Docker volume to mount for each of the task's volumes, by name: fresh ones, as ECS makes per task. */
  volumes: Record<string, string>;
  /** Variables added to, or replacing, the task's environment. */
  environment: Record<string, string>;
  labels?: Record<string, string>;
  /** The most open files this machine lets a container have (an ECS host allows the task's 65 536). */
  maxOpenFiles?: number;
}

const mebibytes = (value: string | number) => `${value}m`;

export function dockerRunArgs(task: TaskDefinition, options: LocalRunOptions): string[] {
  const [container] = task.containerDefinitions;
  if (!container || task.containerDefinitions.length !== 1) throw new Error('a local run starts a task of exactly one container');
  const args = ['run', '--detach', '--pull', 'never', '--name', options.name, '--network', 'host'];
  // Task-level limits are what ECS enforces as a CFS quota and a memory cgroup on EC2.
  args.push('--cpus', String(Number(task.cpu) / 1024), '--cpu-shares', String(container.cpu));
  args.push('--memory', mebibytes(task.memory), '--memory-reservation', mebibytes(container.memoryReservation));
  if (container.readonlyRootFilesystem) args.push('--read-only');
  if (container.linuxParameters.initProcessEnabled) args.push('--init');
  args.push('--stop-timeout', String(container.stopTimeout));
  const cap = (limit: number) => Math.min(limit, options.maxOpenFiles ?? limit);
  for (const { name, softLimit, hardLimit } of container.ulimits) args.push('--ulimit', name === 'nofile' ? `${name}=${cap(softLimit)}:${cap(hardLimit)}` : `${name}=${softLimit}:${hardLimit}`);
  for (const { sourceVolume, containerPath, readOnly } of container.mountPoints) {
    const volume = options.volumes[sourceVolume];
    if (!volume) throw new Error(`no Docker volume given for the task volume "${sourceVolume}"`);
    args.push('--volume', `${volume}:${containerPath}${readOnly ? ':ro' : ''}`);
  }
  for (const [key, value] of Object.entries({ ...container.dockerLabels, ...options.labels })) args.push('--label', `${key}=${value}`);
  const environment = { ...Object.fromEntries(container.environment.map(({ name, value }) => [name, value])), ...options.environment };
  for (const [key, value] of Object.entries(environment)) args.push('--env', `${key}=${value}`);
  args.push(options.image);
  return args;
}
