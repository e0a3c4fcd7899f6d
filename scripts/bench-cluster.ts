/**
 * `npm run bench:cluster`: tile throughput through HAProxy with 1, 2 and 4 replicas (or the
 * counts given), each arrangement started fresh as `npm run cluster` does. Prints one table
 * row per count: requests/s, latency p50/p99, errors. Run it on a quiet machine: it loads
 * every core on purpose.
 *
 *   npm run bench:cluster -- [--replicas 1,2,4] [--duration 20] [--connections 16]
 *                            [--cpus 1] [--processes] [--base-image IMAGE] [--tag TAG]
 */
import { availableParallelism } from 'node:os';
import { parseArgs } from 'node:util';
import autocannon from '../bench/load-generator.js';
import { choosePool, startCluster, stopCluster } from './cluster/cluster.js';
import { tilePaths } from './cluster/tiles.js';

const { values } = parseArgs({
  options: {
    replicas: { type: 'string', default: '1,2,4' },
    duration: { type: 'string', default: '20' },
    connections: { type: 'string', default: '16' },
    cpus: { type: 'string' },
    processes: { type: 'boolean', default: false },
    'base-image': { type: 'string', default: 'node:22-bookworm-slim' },
    tag: { type: 'string', default: 'iiif-elastic:local' },
  },
});
const counts = values.replicas.split(',').map(Number);
const duration = Number(values.duration);
const connections = Number(values.connections);
const cpus = values.cpus === undefined ? undefined : Number(values.cpus);
if (counts.some((n) => !Number.isInteger(n) || n < 1) || !(duration > 0) || !(connections > 0) || (cpus !== undefined && !(cpus > 0))) {
  console.error('bench-cluster: --replicas takes whole numbers (1,2,4); --duration, --connections and --cpus positive numbers');
  process.exit(1);
}

const pool = await choosePool({ processes: values.processes, baseImage: values['base-image'], tag: values.tag, cpus });
const requests = tilePaths().map((path) => ({ path }));
const rows: string[] = [];
console.log(`${availableParallelism()} cores; ${pool.kind}${cpus ? `, --cpus ${cpus} each` : ''}; ${connections} connections, ${duration} s per run`);
for (const count of counts) {
  const cluster = await startCluster(pool, count, `bench-${process.pid}-${count}`);
  try {
    await autocannon({ url: cluster.balancer.url, connections, duration: 2, requests }); // warm-up: metadata caches, JIT
    const result = await autocannon({ url: cluster.balancer.url, connections, duration, requests });
    const failed = result.non2xx + result.errors + result.timeouts;
    rows.push(`| ${count} | ${result.requests.average.toFixed(0)} | ${result.latency.p50} | ${result.latency.p99} | ${failed} |`);
    console.log(rows.at(-1));
  } finally {
    await stopCluster(cluster);
  }
}
console.log(['', '| replicas | tiles/s | p50 ms | p99 ms | failed |', '|---|---|---|---|---|', ...rows].join('\n'));
