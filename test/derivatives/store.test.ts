import { readFile } from 'node:fs/promises';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { directorySpans } from '../../src/derivatives/directories.js';
import { DerivativeStoreError } from '../../src/derivatives/errors.js';
import { versionHash } from '../../src/derivatives/keys.js';
import type { Derivatives } from '../../src/derivatives/open.js';
import type { DerivativeFiles } from '../../src/derivatives/store.js';
import { expectQuadrantColours } from '../fixtures.js';
import { BUCKET, S3Store } from '../source/s3-store.js';
import { container, etagOf, keysUnder, makePyramid, objectBytes, PREFIX } from './fleet-parts.js';

let store: S3Store;
let files: DerivativeFiles;
let pyramidBytes: Buffer;
beforeAll(async () => {
  store = await S3Store.start();
  files = await makePyramid();
  pyramidBytes = await readFile(files.pyramidPath);
});
afterAll(() => store.close());

const opened: Derivatives[] = [];
afterEach(() => {
  store.fault = undefined;
  for (const parts of opened.splice(0)) parts.client.destroy();
});

function open(owner = 'container-a'): Derivatives {
  const parts = container(store, owner);
  opened.push(parts);
  return parts;
}

describe('the derivative store', () => {
  it('publishes a pyramid and its information once per source version and gives them back exactly', async () => {
    const { store: derivatives } = open();
    expect(await derivatives.find('photos/a.jpg', 'etag-1')).toBeUndefined();
    const published = await derivatives.upload('photos/a.jpg', '"etag-1"', files);
    const keys = derivatives.keys('photos/a.jpg', 'etag-1');
    expect(keys.dir).toBe(`${PREFIX}photos/a.jpg/${versionHash('etag-1')}/`);
    expect(await keysUnder(store, keys.dir)).toEqual([keys.complete, keys.info, keys.pyramid].sort());

    const found = await derivatives.find('photos/a.jpg', 'etag-1');
    expect(found).toEqual(published);
    expect(found).toMatchObject({ sourceKey: 'photos/a.jpg', etag: 'etag-1', pyramidKey: keys.pyramid, pyramidSize: pyramidBytes.length });
    // Where its directories lie, for readers to fetch at once.
    expect(found!.directories.length).toBeGreaterThan(0);
    expect(found!.directories).toEqual(await directorySpans(files.pyramidPath));
    // And their bytes, carried by the marker, exactly the pyramid's there.
    expect(found!.carried.map(({ offset, bytes }) => ({ offset, length: bytes.length }))).toEqual(found!.directories);
    for (const { offset, bytes } of found!.carried) expect(bytes.equals(pyramidBytes.subarray(offset, offset + bytes.length))).toBe(true);
    const stored = await objectBytes(store, found!.pyramidKey);
    expect(stored.equals(pyramidBytes)).toBe(true);
    expect((await sharp(stored).metadata()).pages).toBe(4);
    await expectQuadrantColours(await sharp(stored).png().toBuffer());
    expect(await derivatives.readInfo(found!)).toEqual(files.info);
    // Another version of the same source is another derivative.
    expect(await derivatives.find('photos/a.jpg', 'etag-2')).toBeUndefined();
  });

  it('a marker whose carried bytes do not add up (damaged, or an older marker) is used without them', async () => {
    const { store: derivatives } = open();
    await derivatives.upload('photos/damaged.jpg', '"etag-1"', files);
    const keys = derivatives.keys('photos/damaged.jpg', 'etag-1');
    const marker = await store.uploader.send(new GetObjectCommand({ Bucket: BUCKET, Key: keys.complete }));
    const body = Buffer.from(await marker.Body!.transformToByteArray());
    body[body.length >> 1]! ^= 0xff;
    for (const replaced of [body, Buffer.from('{"written by":"an older server"}')]) {
      await store.uploader.send(new PutObjectCommand({ Bucket: BUCKET, Key: keys.complete, Body: replaced, Metadata: marker.Metadata }));
      const found = await derivatives.find('photos/damaged.jpg', 'etag-1');
      expect(found?.pyramidSize).toBe(pyramidBytes.length);
      expect(found!.directories.length).toBeGreaterThan(0);
      expect(found!.carried).toEqual([]);
    }
  });

  it('never takes a half-written version for a complete one', async () => {
    const { store: derivatives } = open();
    const keys = derivatives.keys('half.jpg', 'v1');
    // A converter that died after writing the pyramid, then after the information: no marker, nothing found.
    await store.put(keys.pyramid, pyramidBytes.subarray(0, 4096));
    expect(await derivatives.find('half.jpg', 'v1')).toBeUndefined();
    await store.put(keys.info, Buffer.from(JSON.stringify(files.info)));
    expect(await derivatives.find('half.jpg', 'v1')).toBeUndefined();

    // A published version whose pyramid was replaced afterwards is not the one published.
    await derivatives.upload('half.jpg', 'v1', files);
    await store.put(keys.pyramid, pyramidBytes.subarray(0, 4096));
    expect(await derivatives.find('half.jpg', 'v1')).toBeUndefined();

    // Information replaced after the version was found is refused, not mixed in.
    const found = (await derivatives.upload('half.jpg', 'v1', files))!;
    await store.put(keys.info, Buffer.from(JSON.stringify({ width: 1, height: 1, levels: [] })));
    await expect(derivatives.readInfo(found)).rejects.toBeInstanceOf(DerivativeStoreError);
  });

  it.each([
    ['pyramid.tif', 403, 'AccessDenied'],
    ['pyramid.tif', 500, 'InternalError'],
    ['info.json', 500, 'InternalError'],
    ['complete', 503, 'SlowDown'],
  ])('when S3 refuses to write %s (%i) fails with a DerivativeStoreError and leaves nothing behind', async (file, status, code) => {
    const { store: derivatives } = open();
    const sourceKey = `refused/${file}-${status}.jpg`;
    store.fault = (r) => (r.method === 'PUT' && r.key.endsWith(`/${file}`) ? { status, code } : undefined);
    await expect(derivatives.upload(sourceKey, 'v1', files)).rejects.toBeInstanceOf(DerivativeStoreError);
    expect(await keysUnder(store, `${PREFIX}${sourceKey}/`)).toEqual([]);
    expect(await derivatives.find(sourceKey, 'v1')).toBeUndefined();
    // Once S3 takes writes again, the same version publishes normally.
    store.fault = undefined;
    await derivatives.upload(sourceKey, 'v1', files);
    expect(await derivatives.find(sourceKey, 'v1')).toMatchObject({ sourceKey, pyramidSize: pyramidBytes.length });
  });

  it('reads failing S3 as a DerivativeStoreError, so the caller serves from the source', async () => {
    const { store: derivatives } = open();
    store.fault = (r) => (r.method === 'HEAD' ? { status: 500, code: 'InternalError' } : undefined);
    await expect(derivatives.find('photos/a.jpg', 'etag-1')).rejects.toBeInstanceOf(DerivativeStoreError);
  });

  it("lists every version of one source (and no other source's), and purges them all", async () => {
    const { store: derivatives } = open();
    await derivatives.upload('list/a.jpg', 'v1', files);
    await derivatives.upload('list/a.jpg', 'v2', files);
    // A source whose key starts with a.jpg's derivative folder is another source.
    await derivatives.upload('list/a.jpg/inner.png', 'v1', files);
    const versions = await derivatives.listVersions('list/a.jpg');
    expect(versions.map((v) => v.hash).sort()).toEqual([versionHash('v1'), versionHash('v2')].sort());
    for (const version of versions) {
      expect(version).toMatchObject({ sourceKey: 'list/a.jpg', complete: true, leased: false, dir: `${PREFIX}list/a.jpg/${version.hash}/` });
      expect(version.keys).toHaveLength(3);
      expect(version.bytes).toBeGreaterThan(pyramidBytes.length);
    }
    expect(await derivatives.purge('list/a.jpg')).toHaveLength(2);
    expect(await derivatives.listVersions('list/a.jpg')).toEqual([]);
    expect(await keysUnder(store, `${PREFIX}list/a.jpg/`)).toEqual((await keysUnder(store, `${PREFIX}list/a.jpg/inner.png/`)));
    expect(await derivatives.find('list/a.jpg/inner.png', 'v1')).toBeDefined();
  });

  it('prunes versions whose source changed or is gone and leftovers of crashed converters, nothing else', async () => {
    const { store: derivatives } = open();
    await store.put('prune/kept.jpg', Buffer.from('kept v1'));
    await store.put('prune/changed.jpg', Buffer.from('changed v1'));
    await store.put('prune/gone.jpg', Buffer.from('gone v1'));
    await store.put('prune/crashed.jpg', Buffer.from('crashed v1'));
    await store.put('elsewhere/old.jpg', Buffer.from('elsewhere v2'));
    const kept = await etagOf(store, 'prune/kept.jpg');
    const changedOld = await etagOf(store, 'prune/changed.jpg');
    await derivatives.upload('prune/kept.jpg', kept, files);
    await derivatives.upload('prune/changed.jpg', changedOld, files);
    await derivatives.upload('prune/gone.jpg', await etagOf(store, 'prune/gone.jpg'), files);
    await derivatives.upload('elsewhere/old.jpg', 'an older version', files);
    await store.put('prune/changed.jpg', Buffer.from('changed v2'));
    const changedNew = await etagOf(store, 'prune/changed.jpg');
    await derivatives.upload('prune/changed.jpg', changedNew, files);
    await store.remove('prune/gone.jpg');
    // A converter that crashed after its pyramid: no marker.
    await store.put(derivatives.keys('prune/crashed.jpg', await etagOf(store, 'prune/crashed.jpg')).pyramid, pyramidBytes);

    const dry = await derivatives.prune({ sourcePrefix: 'prune/', dryRun: true, staleAfterMs: 0 });
    expect(dry.pruned.map(({ version, reason }) => [version.sourceKey, version.hash, reason])).toEqual([
      ['prune/changed.jpg', versionHash(changedOld), 'source-changed'],
      ['prune/crashed.jpg', versionHash(await etagOf(store, 'prune/crashed.jpg')), 'incomplete'],
      ['prune/gone.jpg', dry.pruned[2]!.version.hash, 'source-deleted'],
    ]);
    expect(dry.kept).toBe(2);
    expect(await derivatives.find('prune/changed.jpg', changedOld)).toBeDefined();

    // A fresh leftover may be a conversion under way: kept until it is older than a lease.
    const careful = await derivatives.prune({ sourcePrefix: 'prune/', dryRun: true, staleAfterMs: 60_000 });
    expect(careful.pruned.map(({ reason }) => reason)).toEqual(['source-changed', 'source-deleted']);

    const done = await derivatives.prune({ sourcePrefix: 'prune/', staleAfterMs: 0 });
    expect(done.pruned).toHaveLength(3);
    expect(await keysUnder(store, `${PREFIX}prune/`)).toEqual(
      [...Object.values(derivatives.keys('prune/changed.jpg', changedNew)), ...Object.values(derivatives.keys('prune/kept.jpg', kept))]
        .filter((key) => /(pyramid\.tif|info\.json|complete)$/.test(key))
        .sort(),
    );
    expect(await derivatives.find('prune/changed.jpg', changedNew)).toBeDefined();
    // Outside the prefix nothing was looked at.
    expect(await derivatives.find('elsewhere/old.jpg', 'an older version')).toBeDefined();
  });

  it('keeps the derivatives of a source S3 will not show, and says so', async () => {
    const { store: derivatives } = open();
    await store.put('secret/a.jpg', Buffer.from('secret'));
    await derivatives.upload('secret/a.jpg', 'an old version', files);
    store.fault = (r) => (r.method === 'HEAD' && r.key === 'secret/a.jpg' ? { status: 403, code: 'AccessDenied' } : undefined);
    const report = await derivatives.prune({ sourcePrefix: 'secret/', staleAfterMs: 0 });
    expect(report.pruned).toEqual([]);
    expect(report.unchecked.map(({ sourceKey }) => sourceKey)).toEqual(['secret/a.jpg']);
    expect(await derivatives.find('secret/a.jpg', 'an old version')).toBeDefined();
  });
});
