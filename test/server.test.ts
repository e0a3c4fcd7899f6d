import { connect, createServer } from 'node:net';
import { once } from 'node:events';
import { mkdtemp, readdir, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startServer, type RunningServer } from '../src/server.js';
import { makeFixtures } from './fixtures.js';

let root: string;
let running: RunningServer | undefined;

beforeAll(async () => {
  ({ root } = await makeFixtures());
});
afterEach(async () => {
  await running?.close();
  running = undefined;
});

function start(env: Record<string, string>): Promise<RunningServer> {
  return startServer(loadConfig({ PORT: '0', HOST: '127.0.0.1', IIIF_FILE_ROOT: root, ...env }), { logger: false });
}

describe('metrics placement', () => {
  it('serves /metrics on the main port by default', async () => {
    running = await start({});
    expect(running.metricsPort).toBeUndefined();
    const response = await fetch(`http://127.0.0.1:${running.port}/metrics`);
    expect(response.status).toBe(200);
    expect(await response.text()).toMatch(/^iiif_requests_in_flight \d/m);
  });

  it('moves /metrics to IIIF_METRICS_PORT: there only, counting the main port\'s traffic', async () => {
    running = await start({ IIIF_METRICS_PORT: '0' });
    const main = `http://127.0.0.1:${running.port}`;
    const side = `http://127.0.0.1:${running.metricsPort}`;
    expect(running.metricsPort).toBeGreaterThan(0);
    expect(running.metricsPort).not.toBe(running.port);
    expect((await fetch(`${main}/iiif/3/quadrants.png/info.json`)).status).toBe(200);
    expect((await fetch(`${main}/metrics`)).status).toBe(404);
    const scrape = await fetch(`${side}/metrics`);
    expect(scrape.status).toBe(200);
    expect(scrape.headers.get('content-type')).toMatch(/^text\/plain; version=0.0.4/);
    expect(await scrape.text()).toMatch(/^http_request_duration_seconds_count\{route="info",method="GET",status_class="2xx"\} 1$/m);
    // The metrics listener serves nothing else.
    expect((await fetch(`${side}/iiif/3/quadrants.png/info.json`)).status).toBe(404);
    expect((await fetch(`${side}/health`)).status).toBe(404);
  });

  it('the metrics listener keeps the socket deadlines: a silent connection and a trickled head are closed', async () => {
    running = await start({ IIIF_METRICS_PORT: '0', IIIF_HEADERS_TIMEOUT_MS: '1000', IIIF_REQUEST_TIMEOUT_MS: '2000' });
    const closed = (first: string) => {
      const socket = connect(running!.metricsPort!, '127.0.0.1');
      let received = '';
      socket.on('connect', () => socket.write(first));
      socket.on('data', (chunk: Buffer) => (received += chunk.toString('latin1')));
      socket.on('error', () => undefined);
      const started = Date.now();
      // One header byte every 200 ms: without a deadline this would hold the socket for minutes.
      const trickle = setInterval(() => first && !socket.destroyed && socket.write('x'), 200);
      return once(socket, 'close').then(() => {
        clearInterval(trickle);
        return { received, ms: Date.now() - started };
      });
    };
    const outcomes = await Promise.all([closed(''), closed('GET /metrics HTTP/1.1\r\nX-Slow: ')]);
    for (const { received, ms } of outcomes) {
      expect(received).toMatch(/^HTTP\/1\.1 408 /);
      // Deadline 1 s, checked every second: a wide margin, not a speed.
      expect(ms).toBeLessThan(10_000);
    }
  }, 30_000);

  it('serves no /metrics at all with IIIF_METRICS=off', async () => {
    running = await start({ IIIF_METRICS: 'off' });
    expect((await fetch(`http://127.0.0.1:${running.port}/metrics`)).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${running.port}/health`)).status).toBe(200);
  });

  it('fails to start when the metrics port is taken', async () => {
    const blocker = createServer().listen(0, '127.0.0.1');
    await once(blocker, 'listening');
    const taken = (blocker.address() as { port: number }).port;
    try {
      await expect(start({ IIIF_METRICS_PORT: String(taken) })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });
});

describe('operator routes', () => {
  const token = 'a-token-of-sixteen-chars';

  it('live on the metrics listener when IIIF_METRICS_PORT is set, never on the public port', async () => {
    running = await start({ IIIF_METRICS_PORT: '0', IIIF_ADMIN_TOKEN: token });
    const purge = (port: number | undefined) => fetch(`http://127.0.0.1:${port}/admin/cache/quadrants.png`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });
    expect((await purge(running.port)).status).toBe(404);
    expect((await purge(running.metricsPort)).status).toBe(204);
    expect((await fetch(`http://127.0.0.1:${running.metricsPort}/admin/cache/quadrants.png`, { method: 'DELETE' })).status).toBe(401);
  });
});

describe('cache folders at start', () => {
  it('refuses to start, naming the variable, when the pyramid folder cannot be written', async () => {
    const blocker = join(await mkdtemp(join(tmpdir(), 'iiif-blocked-')), 'a-file');
    await writeFile(blocker, 'not a folder');
    // A folder below a regular file cannot exist, whoever we run as (root ignores permissions).
    await expect(start({ IIIF_PYRAMID_DIR: join(blocker, 'pyramids') })).rejects.toThrow(/^IIIF_PYRAMID_DIR \S+ cannot be written \(ENOTDIR\)/);
  });

  it('starts with writable folders and leaves no probe file behind', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'iiif-pyramids-'));
    running = await start({ IIIF_PYRAMID_DIR: join(dir, 'new') });
    expect(await readdir(join(dir, 'new'))).toEqual([]);
  });
});
