import { copyFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { LocalFiles } from '../../src/source/local-files.js';
import { OutsideImage } from '../../src/source/range-reader.js';
import { makeFixtures } from '../fixtures.js';

let a: string;
let b: string;
let size: number;

beforeAll(async () => {
  const { root } = await makeFixtures();
  a = join(root, 'gradient.tif');
  b = join(root, 'gradient-copy.tif');
  await copyFile(a, b);
  size = (await stat(a)).size;
});

describe('local files read by range', () => {
  it('shares open files between concurrent reads and survives evicting files in use', async () => {
    // One open file at most, two files read concurrently: every read evicts the other file,
    // often while a read of it is still running.
    const files = new LocalFiles(1);
    const [fileA, fileB] = [files.file(a, size, 'v1'), files.file(b, size, 'v1')];
    const reads = Array.from({ length: 200 }, (_, i) => (i % 2 ? fileA : fileB).reader.read(i * 1000, 4000));
    const chunks = await Promise.all(reads);
    expect(chunks.every((chunk) => chunk.length === 4000)).toBe(true);
    // Both files hold the same bytes: the same offset reads the same from either.
    expect(chunks[10]!.equals(await fileA.reader.read(10 * 1000, 4000))).toBe(true);
    expect(chunks[10]!.equals(chunks[11]!)).toBe(false);
    // Large reads (asynchronous) too.
    expect((await fileA.reader.read(0, size)).length).toBe(size);
  });

  it('refuses ranges outside the file, and a file shorter than it was', async () => {
    const files = new LocalFiles(2);
    const file = files.file(a, size, 'v1');
    await expect(file.reader.read(size - 10, 11)).rejects.toBeInstanceOf(OutsideImage);
    await expect(file.reader.read(-1, 1)).rejects.toBeInstanceOf(OutsideImage);
    await expect(files.file(a, size + 100, 'v2').reader.read(size, 50)).rejects.toBeInstanceOf(OutsideImage);
    expect(await file.whole()).toBe(a);
    expect(file.onDisk).toBe(true);
  });
});
