import { LoadBalancer } from './haproxy.js';
import { buildImage, ContainerPool, dockerAvailable, ProcessPool, type Replica, type ReplicaPool } from './replicas.js';

/** N identical replicas behind one HAProxy on 127.0.0.1. */
export interface Cluster {
  pool: ReplicaPool;
  balancer: LoadBalancer;
  /** The replicas currently registered in the balancer. */
  replicas: Replica[];
}

export interface PoolChoice {
  /** Use server processes even when a Docker engine answers. */
  processes?: boolean;
  /** Base image for docker/Dockerfile's NODE_IMAGE. */
  baseImage: string;
  tag: string;
  /** Extra environment for every replica. */
  env?: Record<string, string>;
  /** CPU limit per container (ignored for processes). */
  cpus?: number;
}

/** Containers when a Docker engine answers (building the image first), else server processes. */
export async function choosePool({ processes = false, baseImage, tag, env = {}, cpus }: PoolChoice): Promise<ReplicaPool> {
  if (processes || !(await dockerAvailable())) return new ProcessPool(env);
  await buildImage(tag, baseImage);
  return new ContainerPool(tag, env, cpus);
}

export async function startCluster(pool: ReplicaPool, count: number, prefix = 'iiif'): Promise<Cluster> {
  const replicas = await Promise.all(Array.from({ length: count }, (_, i) => pool.start(`${prefix}-${i + 1}`)));
  const balancer = await LoadBalancer.start(replicas);
  await Promise.all(replicas.map((replica) => balancer.waitForStatus(replica.name, 'UP')));
  return { pool, balancer, replicas };
}

/**
 * One step of a rolling deploy, as ECS does it: start the new replica, wait until the balancer
 * has it UP, then stop the old one with SIGTERM (its /health fails, the balancer takes it out,
 * it drains and exits), and finally drop it from the balancer.
 */
export async function replace(cluster: Cluster, old: Replica, name: string): Promise<{ replica: Replica; exitCode: number | string; drainMs: number }> {
  const replica = await cluster.pool.start(name);
  await cluster.balancer.add(replica);
  cluster.replicas.push(replica);
  const { exitCode, ms } = await old.stop();
  await cluster.balancer.remove(old.name);
  cluster.replicas.splice(cluster.replicas.indexOf(old), 1);
  return { replica, exitCode, drainMs: ms };
}

export async function stopCluster(cluster: Cluster): Promise<void> {
  await cluster.balancer.stop();
  await cluster.pool.cleanUp();
}
