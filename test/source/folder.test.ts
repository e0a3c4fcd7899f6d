import { mkdir, mkdtemp, readFile, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { IiifError } from '../../src/errors.js';
import { FolderSource } from '../../src/source/folder.js';
import { makeFixtures, type Fixtures } from '../fixtures.js';

let fixtures: Fixtures;
let source: FolderSource;

beforeAll(async () => {
  fixtures = await makeFixtures();
  source = await FolderSource.open(fixtures.root);
});

async function statusOf(identifier: string): Promise<number | 'ok'> {
  try {
    await source.resolve(identifier);
    return 'ok';
  } catch (error) {
    if (error instanceof IiifError) return error.statusCode;
    throw error;
  }
}

describe('folder source', () => {
  it('resolves a path relative to the root, with a version from mtime and size', async () => {
    const ref = await source.resolve('deep/dir/chart.png');
    expect(await ref.file.whole()).toBe(join(fixtures.root, 'deep', 'dir', 'chart.png'));
    expect(ref.file.onDisk).toBe(true);
    expect(ref.file.reader.size).toBe((await readFile(join(fixtures.root, 'deep', 'dir', 'chart.png'))).length);
    expect(ref.version).toMatch(/^\d+-\d+$/);
  });

  it('tries the usual extensions in order', async () => {
    expect(await (await source.resolve('chart')).file.whole()).toMatch(/chart\.tif$/);
    expect(await (await source.resolve('quadrants')).file.whole()).toMatch(/quadrants\.png$/);
  });

  it('changes the version when the file changes', async () => {
    const path = join(fixtures.root, 'changing.png');
    await writeFile(path, 'one');
    const before = (await source.resolve('changing.png')).version;
    await writeFile(path, 'three');
    expect((await source.resolve('changing.png')).version).not.toBe(before);
  });

  it.each(['../outside/secret.png', '/etc/passwd', 'deep/../../outside/secret.png', 'a\u0000b', 'deep\\dir\\chart.png', 'deep//dir/chart.png', './quadrants.png', '', 'deep', 'escape.png'])(
    'refuses %j with 404',
    async (identifier) => {
      expect(await statusOf(identifier)).toBe(404);
    },
  );

  it('refused identifiers never take the place of real ones in the memory of recent answers', async () => {
    const recalling = await FolderSource.open(fixtures.root, 60_000);
    const path = join(fixtures.root, 'remembered.png');
    await writeFile(path, 'one');
    const before = (await recalling.resolve('remembered.png')).version;
    // More refused identifiers than the memory holds (10,000), each as long as a URL allows.
    const long = 'x/'.repeat(4000);
    for (let i = 0; i < 12_000; i++) {
      await expect(recalling.resolve(`${long}../${i}`)).rejects.toMatchObject({ statusCode: 404 });
    }
    await writeFile(path, 'three');
    // Still the remembered answer: nothing pushed it out.
    expect((await recalling.resolve('remembered.png')).version).toBe(before);
  });

  it('follows symlinks that stay inside the root', async () => {
    await symlink(join(fixtures.root, 'quadrants.png'), join(fixtures.root, 'alias.png'));
    expect(await statusOf('alias.png')).toBe('ok');
  });

  it('refuses to open a root that does not exist or is a file', async () => {
    await expect(FolderSource.open(join(fixtures.root, 'nope'))).rejects.toThrow(/IIIF_FILE_ROOT .* does not exist/);
    await expect(FolderSource.open(join(fixtures.root, 'quadrants.png'))).rejects.toThrow(/is not a folder/);
  });
});

describe('folder listing', () => {
  let root: string;
  let listing: FolderSource;

  beforeAll(async () => {
    const base = await mkdtemp(join(tmpdir(), 'iiif-list-'));
    root = join(base, 'root');
    await mkdir(join(root, 'b', 'c'), { recursive: true });
    await mkdir(join(root, '.hidden'));
    await mkdir(join(base, 'outside'));
    for (const name of ['z.JPG', 'a.png', 'notes.txt', 'b/c/deep.tif', 'b/first.webp', '.hidden/x.png', '.dot.png', 'back\\slash.png', '<b>.png']) {
      await writeFile(join(root, name), 'x');
    }
    await writeFile(join(base, 'outside', 'secret.png'), 'x');
    await symlink(join(base, 'outside', 'secret.png'), join(root, 'escape.png'));
    await symlink(join(base, 'outside'), join(root, 'linked-folder'));
    await symlink(join(root, 'a.png'), join(root, 'alias.png'));
    await symlink(root, join(root, 'b', 'loop'));
    listing = await FolderSource.open(root);
  });

  it('lists image files as sorted identifiers, never hidden, unservable or outside the root', async () => {
    expect(await listing.list(100)).toEqual(['<b>.png', 'a.png', 'alias.png', 'b/c/deep.tif', 'b/first.webp', 'z.JPG']);
  });

  it('stops at the limit', async () => {
    expect(await listing.list(3)).toEqual(['<b>.png', 'a.png', 'alias.png']);
  });

  it('lists only identifiers that resolve', async () => {
    for (const identifier of await listing.list(100)) {
      expect((await listing.resolve(identifier)).identifier).toBe(identifier);
    }
  });
});
