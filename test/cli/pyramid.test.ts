import { copyFile, mkdir, mkdtemp, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { keysUnder, PREFIX } from '../derivatives/fleet-parts.js';
import { makeFixtures, quadrants } from '../fixtures.js';
import { BUCKET, S3Store } from '../source/s3-store.js';
import { cli, cliWith } from './run-cli.js';

let images: string;
let fixtures: string;

beforeAll(async () => {
  ({ root: fixtures } = await makeFixtures());
  images = await mkdtemp(join(tmpdir(), 'pyramid-cli-'));
  await mkdir(join(images, 'sub'));
  const raw = await sharp(await quadrants()).resize(2000, 1000, { fit: 'fill' }).removeAlpha().raw().toBuffer();
  await sharp(raw, { raw: { width: 2000, height: 1000, channels: 3 } }).jpeg().toFile(join(images, 'big.jpg'));
  await sharp(raw, { raw: { width: 2000, height: 1000, channels: 3 } }).png().toFile(join(images, 'sub', 'scan.png'));
  await copyFile(join(fixtures, 'quadrants.png'), join(images, 'small.png'));
});

const dataFiles = async (dir: string) => (await readdir(dir)).filter((name) => name.endsWith('.data'));

describe('iiif-elastic pyramid', () => {
  it('builds what needs a pyramid, then resumes without building again', async () => {
    const pyramidDir = await mkdtemp(join(tmpdir(), 'pyramids-'));
    const args = ['pyramid', images, '--pyramid-dir', pyramidDir, '--pyramid-threshold-pixels', '1000000'];
    const first = await cli(...args);
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe('3 images: 2 pyramids built, 0 already built, 1 not needed, 0 failed\n');
    expect(first.stderr).toMatch(/\[#{30}\] 3\/3 /);
    expect(await dataFiles(pyramidDir)).toHaveLength(2);
    const second = await cli(...args);
    expect(second.stdout).toBe('3 images: 0 pyramids built, 2 already built, 1 not needed, 0 failed\n');
    // The server reads those pyramids: info for the big JPEG shows its levels, no build needed.
    const info = await cli('info', 'big.jpg', '--file-root', images, '--pyramid-dir', pyramidDir, '--pyramid-threshold-pixels', '1000000');
    expect(JSON.parse(info.stdout).tiles[0].scaleFactors).toEqual([1, 2, 4, 8]);
    expect(await dataFiles(pyramidDir)).toHaveLength(2);
  });

  it('reports images it cannot convert, converts the rest, exits 1 and leaves no partial files', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'pyramid-bad-'));
    await copyFile(join(images, 'big.jpg'), join(folder, 'a.jpg'));
    await copyFile(join(fixtures, 'truncated.jpg'), join(folder, 'b.jpg'));
    const pyramidDir = await mkdtemp(join(tmpdir(), 'pyramids-'));
    const result = await cli('pyramid', folder, '--pyramid-dir', pyramidDir, '--pyramid-threshold-pixels', '1');
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('2 images: 1 pyramids built, 0 already built, 0 not needed, 1 failed\n');
    expect(result.stderr.trim().split('\n').at(-1)).toMatch(/^iiif-elastic: 1 image\(s\) could not be converted; first: b\.jpg: the stored image cannot be/);
    expect((await readdir(pyramidDir)).filter((name) => name.startsWith('.tmp'))).toEqual([]);
  });

  it.each([
    [['pyramid', '/no/such/folder'], 1, /^iiif-elastic: IIIF_FILE_ROOT "\/no\/such\/folder" does not exist$/],
    [['pyramid', 's3://'], 2, /is not an S3 URL of the form s3:\/\/bucket\/prefix/],
    [['pyramid', 'https://example.org/images'], 2, /is neither a folder nor an s3:\/\/ URL/],
    [['pyramid', '.', '--limit', '0'], 2, /--limit must be a whole number above 0/],
    [['pyramid'], 2, /pyramid takes <source>/],
  ])('%j fails with one clear line', async (args, code, message) => {
    const result = await cli(...args);
    expect(result.code).toBe(code);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr.trim()).toMatch(message);
  });
});

describe('iiif-elastic pyramid --to-derivatives', () => {
  let store: S3Store;
  beforeAll(async () => {
    store = await S3Store.start();
    const pyramidal = join(await mkdtemp(join(tmpdir(), 'pyramidal-')), 'tiled.tif');
    await sharp(join(images, 'big.jpg')).tiff({ tile: true, pyramid: true, compression: 'jpeg' }).toFile(pyramidal);
    await store.put('pre/big.jpg', await readFile(join(images, 'big.jpg')));
    await store.put('pre/tiled.tif', await readFile(pyramidal));
    await store.put('pre/small.png', await readFile(join(images, 'small.png')));
  }, 60_000);
  afterAll(() => store.close());

  const run = () =>
    cliWith(
      { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' },
      'pyramid',
      `s3://${BUCKET}/pre/`,
      '--to-derivatives',
      '--s3-endpoint',
      store.endpoint,
      '--s3-region',
      'us-east-1',
      '--derivative-prefix',
      PREFIX,
      '--pyramid-threshold-pixels',
      '1000000',
    );

  it('publishes the derivatives of the flat sources that want one, then skips them', async () => {
    const first = await run();
    expect(first.code, first.stderr).toBe(0);
    expect(first.stdout).toBe('3 images: 1 derivatives built, 0 already in the store, 2 not needed, 0 still being built elsewhere, 0 failed\n');
    expect((await keysUnder(store, PREFIX)).map((key) => key.replace(/\/[0-9a-f]{32}\//, '/…/'))).toEqual([
      `${PREFIX}pre/big.jpg/…/complete`,
      `${PREFIX}pre/big.jpg/…/info.json`,
      `${PREFIX}pre/big.jpg/…/pyramid.tif`,
    ]);
    const from = store.requests.length;
    const second = await run();
    expect(second.stdout).toBe('3 images: 0 derivatives built, 1 already in the store, 2 not needed, 0 still being built elsewhere, 0 failed\n');
    // The flat source with a derivative is neither downloaded nor read again past its first block.
    expect(store.requests.slice(from).filter((r) => r.key === 'pre/big.jpg' && r.method === 'GET' && r.range !== 'bytes=0-65535')).toEqual([]);
  }, 120_000);

  it('needs the derivative prefix', async () => {
    const result = await cliWith({}, 'pyramid', `s3://${BUCKET}/pre/`, '--to-derivatives', '--s3-endpoint', store.endpoint, '--s3-region', 'us-east-1');
    expect(result.code).toBe(1);
    expect(result.stderr.trim()).toMatch(/--to-derivatives needs an s3:\/\/ source and IIIF_DERIVATIVE_PREFIX/);
  });
});
