import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { versionHash } from '../../src/derivatives/keys.js';
import type { Derivatives } from '../../src/derivatives/open.js';
import type { DerivativeFiles } from '../../src/derivatives/store.js';
import { container, etagOf, keysUnder, makePyramid, PREFIX } from '../derivatives/fleet-parts.js';
import { BUCKET, S3Store } from '../source/s3-store.js';
import { cli, cliWith } from './run-cli.js';

let store: S3Store;
let files: DerivativeFiles;
let parts: Derivatives;
beforeAll(async () => {
  store = await S3Store.start();
  files = await makePyramid();
  parts = container(store, 'cli-test');
});
afterAll(async () => {
  parts.client.destroy();
  await store.close();
});

const credentials = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };
const prune = (prefix: string, ...extra: string[]) =>
  cliWith(credentials, 'derivatives', 'prune', `s3://${BUCKET}/${prefix}`, '--s3-endpoint', store.endpoint, '--s3-region', 'us-east-1', '--derivative-prefix', PREFIX, ...extra);

describe('iiif-elastic derivatives prune', () => {
  it('deletes the derivatives no source version needs and prints each; --dry-run only prints', async () => {
    await store.put('museum/a.jpg', Buffer.from('a, first version'));
    const old = await etagOf(store, 'museum/a.jpg');
    await parts.store.upload('museum/a.jpg', old, files);
    await store.put('museum/a.jpg', Buffer.from('a, second version'));
    const current = await etagOf(store, 'museum/a.jpg');
    await parts.store.upload('museum/a.jpg', current, files);
    await store.put('museum/gone.jpg', Buffer.from('soon gone'));
    const gone = await etagOf(store, 'museum/gone.jpg');
    await parts.store.upload('museum/gone.jpg', gone, files);
    await store.remove('museum/gone.jpg');
    await parts.store.upload('elsewhere/b.jpg', 'not a version of anything', files);
    const before = await keysUnder(store, PREFIX);

    const dry = await prune('museum/', '--dry-run');
    expect(dry.code, dry.stderr).toBe(0);
    const lines = (verb: string) => [
      new RegExp(`^${verb} s3://${BUCKET}/${PREFIX}museum/a\\.jpg/${versionHash(old)}/ \\(source changed, 3 objects, \\d+ bytes\\)$`),
      new RegExp(`^${verb} s3://${BUCKET}/${PREFIX}museum/gone\\.jpg/${versionHash(gone)}/ \\(source deleted, 3 objects, \\d+ bytes\\)$`),
    ];
    const printed = dry.stdout.trim().split('\n');
    expect(printed).toHaveLength(3);
    lines('would delete').forEach((line, i) => expect(printed[i]).toMatch(line));
    expect(printed[2]).toMatch(/^2 derivative versions would be deleted \(\d+ bytes\), 1 kept, 0 sources not checked$/);
    expect(await keysUnder(store, PREFIX)).toEqual(before);

    const real = await prune('museum/');
    expect(real.code, real.stderr).toBe(0);
    const done = real.stdout.trim().split('\n');
    lines('deleted').forEach((line, i) => expect(done[i]).toMatch(line));
    expect(done[2]).toMatch(/^2 derivative versions deleted \(\d+ bytes\), 1 kept, 0 sources not checked$/);
    expect(await parts.store.find('museum/a.jpg', old)).toBeUndefined();
    expect(await parts.store.find('museum/gone.jpg', gone)).toBeUndefined();
    expect(await parts.store.find('museum/a.jpg', current)).toBeDefined();
    // Outside the prefix nothing is touched.
    expect(await parts.store.find('elsewhere/b.jpg', 'not a version of anything')).toBeDefined();

    expect((await prune('museum/')).stdout).toBe('0 derivative versions deleted (0 bytes), 1 kept, 0 sources not checked\n');
  });

  it('keeps the derivatives of sources S3 will not show, names them and exits 1', async () => {
    await store.put('vault/secret.jpg', Buffer.from('secret'));
    await parts.store.upload('vault/secret.jpg', 'an older version', files);
    store.fault = (r) => (r.method === 'HEAD' && r.key === 'vault/secret.jpg' ? { status: 403, code: 'AccessDenied' } : undefined);
    const result = await prune('vault/');
    store.fault = undefined;
    expect(result.code).toBe(1);
    expect(result.stdout).toBe('0 derivative versions deleted (0 bytes), 0 kept, 1 sources not checked\n');
    // (The AWS SDK may add its own Node-version warning to stderr.)
    const errors = result.stderr.trim().split('\n');
    expect(errors).toContain('not checked: vault/secret.jpg: derivative store: HEAD vault/secret.jpg failed (denied)');
    expect(errors.at(-1)).toBe('iiif-elastic: 1 source(s) could not be checked; their derivatives were kept');
    expect(await parts.store.find('vault/secret.jpg', 'an older version')).toBeDefined();
  });

  it.each([
    [['derivatives'], 2, /derivatives takes <action> <source>/],
    [['derivatives', 'list', 's3://images/x/'], 2, /unknown action "list"; the one action is prune/],
    [['derivatives', 'prune', '/data/images'], 2, /derivatives live in S3: give s3:\/\/bucket\/prefix/],
    [['derivatives', 'prune', 's3://'], 2, /is not an S3 URL of the form s3:\/\/bucket\/prefix/],
    [['derivatives', 'prune', 's3://images/x/'], 1, /IIIF_DERIVATIVE_PREFIX is not set \(--derivative-prefix\)/],
  ])('%j fails with one clear line', async (args, code, message) => {
    const result = await cli(...args);
    expect(result.code).toBe(code);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr.trim()).toMatch(message);
  });
});
