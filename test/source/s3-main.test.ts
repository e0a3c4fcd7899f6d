import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/paths.js';
import { near, pixel, quadrants, RED } from '../fixtures.js';
import { BUCKET, S3Store } from './s3-store.js';

// The compiled entry point, exactly what `npm start` and the container run (npm test builds first).
const MAIN = join(projectRoot(), 'dist', 'src', 'main.js');

let store: S3Store;
beforeAll(async () => {
  store = await S3Store.start();
  await store.put('chart.png', await quadrants());
});
afterAll(() => store.close());

describe('the server process with IIIF_SOURCE=s3', () => {
  it('exits 1 with one line when the bucket is missing', async () => {
    const child = spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH, IIIF_SOURCE: 's3' } });
    let stderr = '';
    child.stderr.on('data', (chunk) => (stderr += chunk));
    const [code] = await once(child, 'exit');
    expect(code).toBe(1);
    expect(stderr).toBe('iiif-elastic: invalid configuration: IIIF_S3_BUCKET must be set when IIIF_SOURCE is s3\n');
  });

  it('serves from the bucket with credentials from the AWS environment chain', async () => {
    const child = spawn(process.execPath, [MAIN], {
      env: {
        PATH: process.env.PATH,
        PORT: '0',
        HOST: '127.0.0.1',
        IIIF_SOURCE: 's3',
        IIIF_S3_BUCKET: BUCKET,
        IIIF_S3_ENDPOINT: store.endpoint,
        AWS_REGION: 'us-east-1',
        AWS_ACCESS_KEY_ID: 'S3RVER',
        AWS_SECRET_ACCESS_KEY: 'S3RVER',
        IIIF_CACHE_DIR: await mkdtemp(join(tmpdir(), 'iiif-cache-')),
      },
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    try {
      const lines = createInterface({ input: child.stdout! });
      const port = await new Promise<number>((resolve, reject) => {
        child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
        lines.on('line', (line) => {
          const entry = JSON.parse(line) as { port?: number };
          if (typeof entry.port === 'number') resolve(entry.port);
        });
      });
      // The S3 client's first-call costs (credentials, connection) were paid before it listened.
      expect(store.requests.map((r) => r.method)).toEqual(['HEAD']);
      const response = await fetch(`http://127.0.0.1:${port}/iiif/3/chart.png/full/100,/0/default.png`);
      expect(response.status).toBe(200);
      expect(near(await pixel(Buffer.from(await response.arrayBuffer()), 5, 5), RED)).toBe(true);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(metrics).toMatch(/^iiif_source_fetch_total\{result="ok"\} 1$/m);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
