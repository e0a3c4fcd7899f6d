import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { GetObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/cluster/free-port.js';
import { healthy, waitUntil } from '../../scripts/cluster/wait.js';
import { projectRoot } from '../../src/paths.js';
import { makeFixtures } from '../fixtures.js';

// The compose stack's one-shot upload job, against a real s3rver process on loopback.
const exec = promisify(execFile);
const credentials = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER', AWS_REGION: 'us-east-1' };
let s3rver: ChildProcess;
let endpoint: string;

beforeAll(async () => {
  const port = await freePort();
  endpoint = `http://127.0.0.1:${port}`;
  s3rver = spawn(join(projectRoot(), 'node_modules', '.bin', 's3rver'), ['--directory', await mkdtemp(join(tmpdir(), 's3rver-')), '--address', '127.0.0.1', '--port', String(port), '--silent'], {
    stdio: 'ignore',
  });
  // s3rver answers any path; a 404 for /health still proves it listens.
  await waitUntil('s3rver to listen', 15_000, async () => (await healthy(port)) || (await fetch(`${endpoint}/`).then(() => true, () => false)));
});

afterAll(() => {
  s3rver?.kill('SIGKILL');
});

describe('upload-samples', () => {
  it('creates the bucket and uploads every file byte for byte under the prefix', async () => {
    const { root } = await makeFixtures();
    await writeFile(join(root, 'notes.txt'), 'not an image, uploaded all the same');
    const { stdout } = await exec(process.execPath, [join(projectRoot(), 'dist', 'scripts', 'upload-samples.js'), '--endpoint', endpoint, '--bucket', 'iiif', '--prefix', 'samples/', root], {
      env: { PATH: process.env.PATH, ...credentials },
    });
    expect(stdout).toMatch(/uploaded s3:\/\/iiif\/samples\/quadrants\.png \(\d+ bytes\)/);
    const client = new S3Client({ endpoint, forcePathStyle: true, region: 'us-east-1', credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    for (const name of ['quadrants.png', 'notes.txt']) {
      const object = await client.send(new GetObjectCommand({ Bucket: 'iiif', Key: `samples/${name}` }));
      expect(Buffer.from(await object.Body!.transformToByteArray())).toEqual(await readFile(join(root, name)));
    }
  });

  it('fails with one usage line when the folder is missing', async () => {
    const outcome = await exec(process.execPath, [join(projectRoot(), 'dist', 'scripts', 'upload-samples.js'), '--bucket', 'iiif'], { env: { PATH: process.env.PATH } }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(outcome.code).toBe(1);
    expect(outcome.stderr).toMatch(/^upload-samples: usage: [^\n]*\n$/);
  });
});
