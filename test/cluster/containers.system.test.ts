import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { replace, startCluster, stopCluster, type Cluster } from '../../scripts/cluster/cluster.js';
import { buildImage, ContainerPool, docker, dockerAvailable } from '../../scripts/cluster/replicas.js';
import { tilePaths } from '../../scripts/cluster/tiles.js';
import { imagesServed, TileLoad } from './load.js';

// Real containers of the real image behind a real HAProxy: what ECS does on one host, with
// client load running throughout. scripts/system/docker.sh provides the engine and base image.
const BASE_IMAGE = 'local/node:22-bookworm-slim';
const IMAGE = 'iiif-elastic:test';
const WORKERS = 4;
const exec = promisify(execFile);

let cluster: Cluster;
let load: TileLoad;
const prefix = `iiif-test-${process.pid}`;
const report: string[] = [];

beforeAll(async () => {
  if (!(await dockerAvailable())) throw new Error('no Docker engine answers: run scripts/system/docker.sh (npm test does)');
  await buildImage(IMAGE, BASE_IMAGE);
  cluster = await startCluster(new ContainerPool(IMAGE, { LOG_LEVEL: 'warn' }), 4, prefix);
  load = new TileLoad(cluster.balancer.url, tilePaths(), WORKERS);
}, 15 * 60_000);

afterAll(async () => {
  await load?.stop();
  if (cluster) await stopCluster(cluster);
  console.log(`cluster test:\n  ${report.join('\n  ')}`);
}, 60_000);

describe('the image', () => {
  it('runs as a non-root user, records the git revision, and has a health check that needs only Node', async () => {
    const [info] = JSON.parse(await docker('image', 'inspect', IMAGE)) as Array<{
      Size: number;
      Config: { User: string; Labels: Record<string, string>; Healthcheck: { Test: string[] }; ExposedPorts: object; Volumes: object };
    }>;
    const { stdout: revision } = await exec('git', ['rev-parse', 'HEAD']);
    expect(info!.Config.User).toBe('node');
    expect(info!.Config.Labels['org.opencontainers.image.revision']).toBe(revision.trim());
    expect(Object.keys(info!.Config.ExposedPorts)).toEqual(['3000/tcp']);
    expect(Object.keys(info!.Config.Volumes)).toEqual(['/var/cache/iiif']);
    expect(info!.Config.Healthcheck.Test).toEqual(['CMD', 'node', 'dist/scripts/healthcheck.js']);
    // The replicas run with --read-only; the health check passes inside one.
    await docker('exec', cluster.replicas[0]!.name, 'node', 'dist/scripts/healthcheck.js');
    report.push(`image size: ${(info!.Size / 1e6).toFixed(0)} MB (base ${BASE_IMAGE} ${(Number(await docker('image', 'inspect', '-f', '{{.Size}}', BASE_IMAGE)) / 1e6).toFixed(0)} MB)`);
  });

  it('loads both native addons in the runtime stage (their libraries are there, not only in the build stage)', async () => {
    for (const addon of ['openjp2', 'jpegtiles']) {
      // require() fails with "cannot open shared object file" when the runtime library is missing.
      await docker('exec', cluster.replicas[0]!.name, 'node', '-e', `require('/app/native/${addon}/build/Release/${addon}.node')`);
    }
  });

  it('exits 1 with one line naming the problem when started with bad configuration', async () => {
    const outcome = await exec('docker', ['run', '--rm', '--pull', 'never', '-e', 'PORT=eighty', '-e', 'IIIF_DRAIN_TIMEOUT_MS=0', IMAGE]).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toMatch(/^iiif-elastic: invalid configuration: PORT must be .*IIIF_DRAIN_TIMEOUT_MS must be [^\n]*\n$/);
  });
});

describe('4 replicas behind HAProxy under continuous load', () => {
  it('spreads tiles over every replica', async () => {
    load.start();
    await load.successes(200);
    const served = await Promise.all(cluster.replicas.map((replica) => imagesServed(replica.port)));
    for (const count of served) expect(count).toBeGreaterThan(10);
    expect(load.failed).toBe(0);
    report.push(`balanced: image requests per replica after ${load.ok} tiles: ${served.join(', ')}`);
  }, 120_000);

  it('SIGTERM on one replica: it drains and exits 0, and no client request fails', async () => {
    const [victim] = cluster.replicas;
    const failedBefore = load.failed;
    const { exitCode, ms } = await victim!.stop();
    await cluster.balancer.remove(victim!.name);
    cluster.replicas.shift();
    await load.successes(50);
    expect(exitCode).toBe(0);
    expect(load.failures.slice(failedBefore)).toEqual([]);
    report.push(`SIGTERM drain: docker stop → exit 0 in ${ms} ms (IIIF_DRAIN_DELAY_MS 5000 default), 0 failed requests`);
  }, 120_000);

  it('SIGKILL on another: requests fail only until HAProxy marks it down', async () => {
    const [victim] = cluster.replicas;
    const failedBefore = load.failed;
    const okBefore = load.ok;
    await victim!.kill();
    await cluster.balancer.waitForStatus(victim!.name, 'DOWN');
    const failedUntilDown = load.failures.slice(failedBefore);
    await load.successes(50);
    // Nothing fails once it is down: every later failure would be counted here too.
    expect(load.failures.slice(failedBefore)).toEqual(failedUntilDown);
    // At most the requests in flight at the kill, plus those routed before the health check noticed.
    expect(failedUntilDown.length).toBeLessThanOrEqual(WORKERS * 3);
    await cluster.balancer.remove(victim!.name);
    cluster.replicas.shift();
    report.push(
      `SIGKILL: ${failedUntilDown.length} failed requests until HAProxy marked it DOWN (${load.ok - okBefore} succeeded meanwhile): ${JSON.stringify(failedUntilDown)}`,
    );
  }, 120_000);

  it('rolling replacement of every replica, one by one: no client request fails', async () => {
    // First back to 4 (as ECS replaces stopped tasks), then replace each of the 4.
    for (const name of ['a', 'b']) {
      const replica = await cluster.pool.start(`${prefix}-${name}`);
      await cluster.balancer.add(replica);
      cluster.replicas.push(replica);
    }
    const failedBefore = load.failed;
    const okBefore = load.ok;
    const drains: number[] = [];
    for (const [i, old] of [...cluster.replicas].entries()) {
      const { exitCode, drainMs } = await replace(cluster, old, `${prefix}-v2-${i + 1}`);
      expect(exitCode).toBe(0);
      drains.push(drainMs);
    }
    await load.successes(50);
    await load.stop();
    expect(load.failures.slice(failedBefore)).toEqual([]);
    const served = await Promise.all(cluster.replicas.map((replica) => imagesServed(replica.port)));
    for (const count of served) expect(count).toBeGreaterThan(0);
    expect([...(await cluster.balancer.statuses()).values()]).toEqual(['UP', 'UP', 'UP', 'UP']);
    report.push(`rolling: 4 replicas replaced, ${load.ok - okBefore} tiles served, 0 failed; drains ${drains.join(', ')} ms`);
    report.push(`total: ${load.ok} tiles served, ${load.failed} failed (all during the SIGKILL window)`);
  }, 300_000);
});
