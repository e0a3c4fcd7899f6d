import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { haproxyConfig } from '../../scripts/cluster/haproxy.js';
import { replace, startCluster, stopCluster, type Cluster } from '../../scripts/cluster/cluster.js';
import { ProcessPool } from '../../scripts/cluster/replicas.js';
import { makeFixtures } from '../fixtures.js';
import { imagesServed, TileLoad } from './load.js';

// The `npm run cluster` fallback without a Docker engine: server processes on PORT=0 behind the
// same HAProxy arrangement, so the balancing and draining logic is proven on any machine.
let cluster: Cluster;

beforeAll(async () => {
  const { root } = await makeFixtures();
  const pool = new ProcessPool({ IIIF_FILE_ROOT: root, IIIF_DRAIN_DELAY_MS: '3000' });
  cluster = await startCluster(pool, 2, 'proc');
}, 60_000);

afterAll(async () => {
  if (cluster) await stopCluster(cluster);
});

describe('replica processes behind HAProxy', () => {
  it('writes a health-checked, loopback-only configuration', () => {
    const config = haproxyConfig({ port: 8080, adminSocket: '/tmp/a.sock', backends: [{ name: 'r1', port: 4001 }] });
    expect(config).toContain('bind 127.0.0.1:8080');
    expect(config).toContain('option httpchk GET /health');
    expect(config).toContain('server r1 127.0.0.1:4001 check inter 1s fall 2 rise 1 observe layer4 error-limit 3 on-error mark-down');
  });

  it('balances over both, and a rolling replacement drops no request', async () => {
    const load = new TileLoad(cluster.balancer.url, ['/iiif/3/quadrants.png/0,0,200,100/100,/0/default.png'], 2, 10);
    load.start();
    try {
      await load.successes(40);
      for (const replica of cluster.replicas) expect(await imagesServed(replica.port)).toBeGreaterThan(5);
      const { exitCode } = await replace(cluster, cluster.replicas[0]!, 'proc-new');
      expect(exitCode).toBe(0);
      await load.successes(20);
    } finally {
      await load.stop();
    }
    expect(load.failures).toEqual([]);
    expect([...(await cluster.balancer.statuses()).keys()].sort()).toEqual(['proc-2', 'proc-new']);
  }, 60_000);
});
