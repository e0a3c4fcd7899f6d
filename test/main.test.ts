import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAIN, startServerProcess, type ServerProcess } from '../scripts/cluster/server-process.js';
import { makeFixtures } from './fixtures.js';

let root: string;
beforeAll(async () => {
  ({ root } = await makeFixtures());
});

async function runToExit(env: Record<string, string>) {
  const child = spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH, ...env } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => (stderr += chunk));
  const [code] = await once(child, 'exit');
  return { code, stdout, stderr };
}

describe('process start-up', () => {
  it('exits 1 with one line naming every bad variable', async () => {
    const result = await runToExit({ PORT: 'eighty', IIIF_MAX_AREA: '-1', IIIF_FILE_ROOT: root });
    expect(result.code).toBe(1);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/^iiif-elastic: invalid configuration: PORT must be .*IIIF_MAX_AREA must be/);
  });

  it('exits 1 when the image folder is missing', async () => {
    const result = await runToExit({ PORT: '0', HOST: '127.0.0.1', IIIF_FILE_ROOT: join(root, 'missing') });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/^iiif-elastic: IIIF_FILE_ROOT ".*missing" does not exist\n$/);
  });

  describe('serving', () => {
    let server: ServerProcess;
    let port = 0;
    let logs: Array<Record<string, unknown>> = [];

    beforeAll(async () => {
      server = await startServerProcess({ IIIF_FILE_ROOT: root });
      ({ port, logs } = server);
    });

    afterAll(async () => {
      server.child.kill('SIGKILL');
    });

    it('PORT=0 picks a free port and logs the real one', async () => {
      expect(port).toBeGreaterThan(0);
      const response = await fetch(`http://127.0.0.1:${port}/health`);
      expect(response.status).toBe(200);
      expect(await response.json()).toEqual({ status: 'ok' });
    });

    it('logs JSON lines carrying the request id, and echoes a caller-supplied one', async () => {
      const response = await fetch(`http://127.0.0.1:${port}/iiif/3/quadrants.png/info.json`, {
        headers: { 'x-request-id': 'trace-abc.123' },
      });
      expect(response.status).toBe(200);
      expect(response.headers.get('x-request-id')).toBe('trace-abc.123');
      await new Promise((resolve) => setTimeout(resolve, 100));
      const entries = logs.filter((entry) => entry.reqId === 'trace-abc.123');
      expect(entries.length).toBeGreaterThanOrEqual(2);
      expect(entries.some((entry) => (entry.res as { statusCode?: number } | undefined)?.statusCode === 200)).toBe(true);
    });

    it('replaces a hostile request id with a generated one', async () => {
      const response = await fetch(`http://127.0.0.1:${port}/health`, { headers: { 'x-request-id': 'a b\tc'.repeat(50) } });
      expect(response.headers.get('x-request-id')).toMatch(/^[0-9a-f-]{36}$/);
    });
  });
});
