/**
 * The rendered ECS definitions go through the AWS CLI's own parameter validation (the botocore
 * service model of Debian's awscli), offline: the endpoint is a closed loopback port, so a
 * request that passes validation fails to connect and nothing is ever sent. Validation errors
 * exit 252, connection errors 255.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { ARTIFACTS, render } from '../../deploy/src/render.js';
import { capacityFile, measuredCapacity } from './fixtures.js';

// By path: scripts/system/awscli.sh installs Debian's package; an `aws` elsewhere on PATH may differ.
const AWS = '/usr/bin/aws';
let out: string;
let closedEndpoint: string;

// The CLI (Python) and the CDK synthesis take seconds when idle and far longer on a loaded
// machine; the limits only catch a hang, no result depends on speed.
const SLOW_TOOL_MS = 10 * 60_000;

/** A loopback port nobody listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

beforeAll(async () => {
  out = await mkdtemp(join(tmpdir(), 'iiif-awscli-'));
  await render(await capacityFile(measuredCapacity()), out);
  closedEndpoint = `http://127.0.0.1:${await closedPort()}`;
}, SLOW_TOOL_MS);

async function awsEcs(command: string, file: string): Promise<{ code: number; stderr: string }> {
  const env = {
    PATH: process.env.PATH,
    HOME: out,
    AWS_ACCESS_KEY_ID: 'AKIAOFFLINEVALIDATION',
    AWS_SECRET_ACCESS_KEY: 'offline-validation-only',
    AWS_CONFIG_FILE: '/dev/null',
    AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_MAX_ATTEMPTS: '1',
    AWS_RETRY_MODE: 'standard',
  };
  const args = ['ecs', command, '--cli-input-json', `file://${file}`, '--endpoint-url', closedEndpoint, '--region', 'us-east-1', '--no-cli-pager', '--cli-connect-timeout', '2'];
  try {
    await promisify(execFile)(AWS, args, { env, timeout: SLOW_TOOL_MS });
    return { code: 0, stderr: '' };
  } catch (error) {
    const failed = error as { code: number; stderr: string };
    return { code: failed.code, stderr: failed.stderr };
  }
}

/** Passes validation: the CLI got as far as connecting to the (closed) endpoint. */
function expectValid(result: { code: number; stderr: string }): void {
  expect(result.stderr).not.toMatch(/validation/i);
  expect(result.stderr).toContain('Could not connect to the endpoint URL');
  expect(result.code).toBe(255);
}

async function brokenCopy(relative: string, breakIt: (definition: Record<string, unknown>) => void): Promise<string> {
  const definition = JSON.parse(await readFile(join(out, relative), 'utf8')) as Record<string, unknown>;
  breakIt(definition);
  const path = join(out, `broken-${relative.replace('/', '-')}`);
  await writeFile(path, JSON.stringify(definition));
  return path;
}

describe('AWS CLI parameter validation, offline', () => {
  it('accepts the task definition (register-task-definition)', async () => {
    expectValid(await awsEcs('register-task-definition', join(out, ARTIFACTS.taskDefinition)));
  }, SLOW_TOOL_MS);

  it('accepts the one-off derivatives task definition (register-task-definition)', async () => {
    expectValid(await awsEcs('register-task-definition', join(out, ARTIFACTS.derivativesTask)));
  }, SLOW_TOOL_MS);

  it('accepts the service definition (create-service)', async () => {
    expectValid(await awsEcs('create-service', join(out, ARTIFACTS.service)));
  }, SLOW_TOOL_MS);

  it('rejects a task definition with a wrongly typed host port, so the check can fail', async () => {
    const path = await brokenCopy(ARTIFACTS.taskDefinition, (task) => {
      const [container] = task.containerDefinitions as Array<{ portMappings: Array<Record<string, unknown>> }>;
      container!.portMappings[0]!.hostPort = 'dynamic';
    });
    const result = await awsEcs('register-task-definition', path);
    expect(result.code).toBe(252);
    expect(result.stderr).toMatch(/Parameter validation failed:[\s\S]*hostPort/);
  }, SLOW_TOOL_MS);

  it('rejects a service definition with an unknown field', async () => {
    const path = await brokenCopy(ARTIFACTS.service, (service) => {
      service.placementStrategies = service.placementStrategy;
    });
    const result = await awsEcs('create-service', path);
    expect(result.code).toBe(252);
    expect(result.stderr).toMatch(/Parameter validation failed:[\s\S]*placementStrategies/);
  }, SLOW_TOOL_MS);
});
