import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { projectRoot } from '../../src/paths.js';

// docker/compose.yaml must be valid for Debian's docker-compose 1.29 (what these machines have).
const exec = promisify(execFile);
const file = join(projectRoot(), 'docker', 'compose.yaml');

describe('docker/compose.yaml', () => {
  it('is accepted by docker-compose 1.29 with N replicas on ephemeral ports behind HAProxy', async () => {
    const { stdout: version } = await exec('docker-compose', ['version', '--short']);
    expect(version.trim()).toMatch(/^1\.29\./);
    const { stdout: services } = await exec('docker-compose', ['-f', file, 'config', '--services']);
    expect(services.trim().split('\n').sort()).toEqual(['iiif', 'lb', 's3', 'upload']);
    const { stdout: resolved } = await exec('docker-compose', ['-f', file, 'config'], { env: { ...process.env, NODE_IMAGE: 'local/node:22-bookworm-slim' } });
    expect(resolved).toMatch(/replicas: 3/);
    expect(resolved).toMatch(/IIIF_SOURCE: s3/);
    expect(resolved).toMatch(/IIIF_S3_ENDPOINT: http:\/\/s3:4568/);
    expect(resolved).toMatch(/NODE_IMAGE: local\/node:22-bookworm-slim/);
    expect(resolved).toMatch(/condition: service_completed_successfully/);
    expect(resolved).toMatch(/host_ip: 127\.0\.0\.1|127\.0\.0\.1:8080:8080/);
  });
});
