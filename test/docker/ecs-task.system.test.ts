/**
 * The image run as ECS runs the committed task definition (deploy/ecs/task-definition.json):
 * fresh Docker volumes at its mount points, its environment, its limits, a read-only root, the
 * user the image runs as. Images come from S3 (a real S3 wire-protocol server on loopback). What
 * ECS would do with a broken cache volume is shown too: the task stops at once, loudly.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startLocalTask, TaskExited, type LocalTask } from '../../bench/local-task.js';
import { BUCKET, S3Store } from '../../bench/s3-store.js';
import { PLACEHOLDERS } from '../../deploy/src/ecs.js';
import type { TaskDefinition } from '../../deploy/src/local-run.js';
import { deployDir, ARTIFACTS } from '../../deploy/src/render.js';
import { buildImage, docker, dockerAvailable } from '../../scripts/cluster/replicas.js';

const BASE_IMAGE = 'local/node:22-bookworm-slim';
const IMAGE = 'iiif-elastic:ecs-task-test';
// Building the image and starting containers take minutes on a loaded machine; these limits only catch a hang.
const SLOW_MS = 20 * 60_000;
const exec = promisify(execFile);

let store: S3Store;
let task: LocalTask | undefined;

/** The committed task definition with the values an operator fills in with envsubst (deploy/README.md). */
async function committedTask(): Promise<TaskDefinition> {
  const values: Record<string, string> = { [PLACEHOLDERS.image]: IMAGE, [PLACEHOLDERS.bucket]: BUCKET, [PLACEHOLDERS.bucketPrefix]: '', [PLACEHOLDERS.derivativePrefix]: '', [PLACEHOLDERS.region]: 'us-east-1' };
  let text = await readFile(join(deployDir(), ARTIFACTS.taskDefinition), 'utf8');
  for (const [placeholder, value] of Object.entries(values)) text = text.replaceAll(placeholder, value);
  return JSON.parse(text) as TaskDefinition;
}

/** What only the local run differs in: the S3 stand-in instead of AWS, and its credentials. */
const s3Environment = () => ({ IIIF_S3_ENDPOINT: store.endpoint, IIIF_S3_FORCE_PATH_STYLE: 'true', AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' });

async function metric(line: string): Promise<number> {
  const text = await (await fetch(`${task!.metricsUrl}/metrics`)).text();
  const found = text.split('\n').find((l) => l.startsWith(`${line} `));
  return found ? Number(found.slice(line.length + 1)) : 0;
}

async function dockerExec(...command: string[]): Promise<{ code: number; output: string }> {
  return exec('docker', ['exec', task!.name, ...command]).then(
    ({ stdout }) => ({ code: 0, output: stdout }),
    (error: { code: number; stderr: string }) => ({ code: error.code, output: error.stderr }),
  );
}

beforeAll(async () => {
  if (!(await dockerAvailable())) throw new Error('no Docker engine answers: run scripts/system/docker.sh (npm test does)');
  await buildImage(IMAGE, BASE_IMAGE);
  store = await S3Store.start();
  // 17 megapixels, one level: above the pyramid threshold, so the first tile builds a pyramid.
  await store.put('flat.jpg', await sharp({ create: { width: 5000, height: 3400, channels: 3, background: '#3a6' } }).jpeg().toBuffer());
}, SLOW_MS);

afterAll(async () => {
  await task?.remove();
  await store?.close();
}, SLOW_MS);

describe('the image run as the ECS task definition runs it', () => {
  it('declares the task definition\'s cache mount as a volume owned by the user it runs as', async () => {
    const definition = await committedTask();
    const cacheMount = definition.containerDefinitions[0]!.mountPoints.find((m) => m.sourceVolume === 'cache')!.containerPath;
    const [image] = JSON.parse(await docker('image', 'inspect', IMAGE)) as Array<{ Config: { User: string; Volumes: Record<string, object> } }>;
    expect(image!.Config.User).toBe('node');
    // Docker fills a fresh volume from the image's folder at that path, ownership included.
    expect(Object.keys(image!.Config.Volumes)).toContain(cacheMount);
  });

  it('writes its source cache and its pyramids on fresh volumes, and the cache metrics move', async () => {
    task = await startLocalTask(await committedTask(), { image: IMAGE, environment: s3Environment() });
    const info = await fetch(`${task.url}/iiif/3/flat.jpg/info.json`);
    expect(info.status).toBe(200);
    expect(await info.json()).toMatchObject({ width: 5000, height: 3400 });
    const tile = await fetch(`${task.url}/iiif/3/flat.jpg/0,0,1024,1024/256,256/0/default.jpg`);
    expect(tile.status).toBe(200);
    expect((await sharp(Buffer.from(await tile.arrayBuffer())).metadata()).width).toBe(256);

    // Bytes on the task's cache volume, below the folders the environment names, owned by the server's user.
    const cache = task.volumeFolders.cache!;
    // The source cache holds blocks and whole objects in a folder per key and version.
    const sources = await readdir(join(cache, 'sources'), { recursive: true });
    const pyramids = await readdir(join(cache, 'pyramids'));
    const whole = sources.filter((f) => /(^|\/)whole-\d+$/.test(f));
    expect(whole).toHaveLength(1);
    expect((await stat(join(cache, 'sources', whole[0]!))).uid).toBe(1000);
    expect(pyramids.filter((f) => f.endsWith('.data'))).toHaveLength(1);
    const pyramid = await stat(join(cache, 'pyramids', pyramids.find((f) => f.endsWith('.data'))!));
    expect(pyramid.size).toBeGreaterThan(10_000);
    expect(pyramid.uid).toBe(1000);

    expect(await metric('iiif_source_cache_degraded')).toBe(0);
    expect(await metric('iiif_pyramid_cache_degraded')).toBe(0);
    expect(await metric('iiif_source_cache_entries')).toBeGreaterThanOrEqual(1);
    expect(await metric('iiif_source_cache_bytes')).toBeGreaterThan(0);
    expect(await metric('iiif_pyramid_builds_total{result="built"}')).toBe(1);
    expect(await metric('iiif_pyramid_cache_entries')).toBe(1);

    // Another tile: served from the stored pyramid, with no second S3 GET and no second build.
    const getsBefore = store.gets('flat.jpg');
    expect((await fetch(`${task.url}/iiif/3/flat.jpg/1024,1024,1024,1024/256,256/0/default.jpg`)).status).toBe(200);
    expect(await metric('iiif_pyramid_builds_total{result="built"}')).toBe(1);
    expect(store.gets('flat.jpg')).toBe(getsBefore);
  }, SLOW_MS);

  it('keeps /metrics off the public port, has a read-only root and a writable /tmp', async () => {
    expect((await fetch(`${task!.url}/metrics`)).status).toBe(404);
    expect((await fetch(`${task!.url}/health`)).status).toBe(200);
    expect((await fetch(`${task!.metricsUrl}/metrics`)).status).toBe(200);
    const write = (path: string) => dockerExec('node', '-e', `require('node:fs').writeFileSync('${path}', 'x')`);
    expect((await write('/app/probe')).output).toContain('EROFS');
    expect((await write('/tmp/probe')).code).toBe(0);
    expect((await dockerExec('id', '-u')).output.trim()).toBe('1000');
  }, SLOW_MS);

  it('stops at start, exit code 1 and one line naming the folder, when its cache volume is not writable', async () => {
    // The layout this deployment once had: a fresh volume at a path the image does not own (root's, mode 0755).
    const broken = await committedTask();
    const container = broken.containerDefinitions[0]!;
    container.mountPoints = container.mountPoints.map((m) => (m.sourceVolume === 'cache' ? { ...m, containerPath: '/cache' } : m));
    container.environment = container.environment.map((e) => (e.name === 'IIIF_CACHE_DIR' ? { ...e, value: '/cache/sources' } : e.name === 'IIIF_PYRAMID_DIR' ? { ...e, value: '/cache/pyramids' } : e));
    const failure = await startLocalTask(broken, { image: IMAGE, environment: s3Environment() }).then(
      async (started) => {
        await started.remove();
        return undefined;
      },
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(TaskExited);
    expect((failure as TaskExited).exitCode).toBe(1);
    expect((failure as TaskExited).logs).toMatch(/^iiif-elastic: IIIF_CACHE_DIR \/cache\/sources cannot be written \(EACCES\)/m);
  }, SLOW_MS);
});
