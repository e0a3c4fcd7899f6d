/**
 * `npm run cluster`: N identical replicas behind HAProxy on this machine, as ECS runs them on
 * one host. Builds the image and starts containers on ephemeral loopback ports when a Docker
 * engine answers, otherwise N server processes on ephemeral ports. Prints the balancer's URL
 * and runs until Ctrl-C, then stops everything.
 *
 *   npm run cluster -- [--replicas N] [--processes] [--base-image IMAGE] [--tag TAG]
 */
import { parseArgs } from 'node:util';
import { choosePool, startCluster, stopCluster } from './cluster/cluster.js';

const { values } = parseArgs({
  options: {
    replicas: { type: 'string', default: '3' },
    processes: { type: 'boolean', default: false },
    'base-image': { type: 'string', default: 'node:22-bookworm-slim' },
    tag: { type: 'string', default: 'iiif-elastic:local' },
  },
});
const count = Number(values.replicas);
if (!Number.isInteger(count) || count < 1 || count > 64) {
  console.error(`cluster: --replicas must be a whole number from 1 to 64, got "${values.replicas}"`);
  process.exit(1);
}

const pool = await choosePool({ processes: values.processes, baseImage: values['base-image'], tag: values.tag });
const cluster = await startCluster(pool, count).catch(async (error: unknown) => {
  await pool.cleanUp();
  console.error(`cluster: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
});
for (const replica of cluster.replicas) console.log(`replica ${replica.name}: http://127.0.0.1:${replica.port} (${pool.kind})`);
console.log(`load balancer: ${cluster.balancer.url}`);
console.log('Ctrl-C stops the balancer and every replica.');

let stopping = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    void stopCluster(cluster).then(() => process.exit(0));
  });
}
