import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServerProcess } from '../../scripts/cluster/server-process.js';
import { readTiffLayout } from '../../src/image/tiles/tiff-layout.js';
import { photo } from '../image/tiles/foreign-pyramids.js';
import { jpegPageTags, TAG, TiffBuilder, type TagValue } from '../tiff-builder.js';
import { appFor } from './helpers.js';
import { localFile } from '../image/local-file.js';

let folder: string;
let app: FastifyInstance;
let tiles: Buffer[];
let tables: Buffer;

type Change = (tags: Record<number, TagValue>, file: TiffBuilder, offsets: number[], counts: number[]) => void;

/** A 512×512 page of four real 256×256 JPEG tiles sharing tables, with `change` applied to its tags. */
function page(file: TiffBuilder, change: Change = () => undefined): void {
  const offsets = tiles.map((tile) => file.data(tile));
  const counts = tiles.map((tile) => tile.length);
  const tags = jpegPageTags({ width: 512, height: 512, tileSize: 256, photometric: 6, samples: 3, offsets, counts, jpegTables: tables, subsampling: [2, 2] });
  change(tags, file, offsets, counts);
  file.directory(tags);
}

function tiff(change?: Change): Buffer {
  const file = new TiffBuilder();
  page(file, change);
  return file.build();
}

/**
 * 63 directories: a real first page, then 62 that all share one pair of 4-million-entry tile
 * arrays (32 MB of file). Read per page, they would be 500 million values.
 */
function sharedHugeArrays(): Buffer {
  const file = new TiffBuilder();
  page(file);
  const entries = 4_000_000;
  // Every tile one byte at offset 8: inside the file, so each page looks sound.
  const offsets = file.data(Buffer.alloc(entries * 4).fill(Buffer.from([8, 0, 0, 0])));
  const counts = file.data(Buffer.alloc(entries * 4).fill(Buffer.from([1, 0, 0, 0])));
  for (let i = 1; i < 63; i++) {
    page(file, (tags) => {
      // 2000 × 2000 tiles of 16 px: consistent with the arrays, 1 gigapixel.
      Object.assign(tags, {
        [TAG.width]: { long: [32_000] },
        [TAG.height]: { long: [32_000] },
        [TAG.tileWidth]: { long: [16] },
        [TAG.tileHeight]: { long: [16] },
        [TAG.tileOffsets]: { long: { count: entries, offset: offsets } },
        [TAG.tileByteCounts]: { long: { count: entries, offset: counts } },
      });
    });
  }
  return file.build();
}

/** Each directory's "next" pointing back at the first: a loop. */
function loop(): Buffer {
  const bytes = tiff();
  const first = bytes.readUInt32LE(4);
  const count = bytes.readUInt16LE(first);
  bytes.writeUInt32LE(first, first + 2 + count * 12);
  return bytes;
}

beforeAll(async () => {
  folder = await mkdtemp(join(tmpdir(), 'hostile-'));
  // Real tiles from a libvips TIFF: its tables and abbreviated tile streams.
  await photo(512, 512).tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 80 }).toFile(join(folder, 'source.tif'));
  const layout = (await readTiffLayout((await localFile(join(folder, 'source.tif'))).reader))![0]!;
  const bytes = await readFile(join(folder, 'source.tif'));
  tiles = layout.tileOffsets.map((offset, i) => bytes.subarray(offset, offset + layout.tileByteCounts[i]!));
  tables = layout.jpegTables!;
  const files: Record<string, Buffer> = {
    'built.tif': tiff(),
    'offsets-past-end.tif': tiff((tags) => (tags[TAG.tileOffsets] = { long: [8, 8, 8, 1e9] })),
    'counts-too-small.tif': tiff((tags, _file, _offsets, counts) => (tags[TAG.tileByteCounts] = { long: counts.map((n) => n >> 1) })),
    'counts-too-large.tif': tiff((tags, _file, _offsets, counts) => (tags[TAG.tileByteCounts] = { long: counts.map((n) => n * 3) })),
    'tile-size-lies.tif': tiff((tags) => {
      tags[TAG.tileWidth] = { long: [512] };
      tags[TAG.tileHeight] = { long: [128] };
    }),
    'too-few-tiles.tif': tiff((tags, _file, offsets, counts) => {
      tags[TAG.tileOffsets] = { long: offsets.slice(0, 3) };
      tags[TAG.tileByteCounts] = { long: counts.slice(0, 3) };
    }),
    'tiles-at-the-header.tif': tiff((tags) => (tags[TAG.tileOffsets] = { long: [0, 0, 0, 0] })),
    'loop.tif': loop(),
    'shared-huge-arrays.tif': sharedHugeArrays(),
  };
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(folder, name), bytes);
  app = await appFor(folder);
});
afterAll(() => app?.close());

const URLS = ['info.json', '0,0,256,256/256,256/0/default.jpg', '256,256,256,256/256,256/0/default.jpg', '0,0,300,300/300,300/0/default.jpg', 'full/max/0/default.png'];

describe('TIFF files whose tags lie', () => {
  it('the hand-built page of real tiles is served (the builder is sound)', async () => {
    for (const url of URLS) expect((await app.inject({ url: `/iiif/3/built.tif/${url}` })).statusCode, url).toBe(200);
    expect((await app.inject({ url: '/iiif/3/built.tif/256,0,256,256/256,256/0/default.jpg' })).headers['x-iiif-render']).toMatch(/^passthrough/);
  });

  it.each([
    // Every tile's bytes end early: nothing of it is served, not even libvips' grey fill.
    ['counts-too-small', ['0,0', '256,256', '0,0,300', 'full']],
    ['tile-size-lies', ['0,0', '256,256', '0,0,300', 'full']],
    ['tiles-at-the-header', ['0,0', '256,256', '0,0,300', 'full']],
    // One lying tile: the requests that need it fail, the others are served.
    ['offsets-past-end', ['256,256', '0,0,300', 'full']],
    ['counts-too-large', ['256,256', '0,0,300', 'full']],
    ['too-few-tiles', ['256,256', '0,0,300', 'full']],
  ])('%s: 422 for the images it spoils, never a 5xx', async (name, spoiled) => {
    for (const url of URLS) {
      const response = await app.inject({ url: `/iiif/3/${name}.tif/${url}` });
      const expected = spoiled.some((prefix) => url.startsWith(prefix)) ? 422 : 200;
      expect(response.statusCode, `${url}: ${response.body.slice(0, 100)}`).toBe(expected);
    }
  });

  it('a directory chain that loops is read once', async () => {
    expect(await readTiffLayout((await localFile(join(folder, 'loop.tif'))).reader)).toHaveLength(1);
    for (const url of URLS) expect((await app.inject({ url: `/iiif/3/loop.tif/${url}` })).statusCode).toBeLessThan(500);
  });

  it('63 directories sharing 4-million-entry tile arrays: one budget for the file, the real page stays served', async () => {
    const pages = (await readTiffLayout((await localFile(join(folder, 'shared-huge-arrays.tif'))).reader))!;
    expect(pages.map((p) => [p.width, p.tileOffsets.length])).toEqual([[512, 4]]);
    for (const url of URLS) expect((await app.inject({ url: `/iiif/3/shared-huge-arrays.tif/${url}` })).statusCode, url).toBe(200);
  });

  it('…and a server whose heap could not hold those arrays twice serves it and stays up', async () => {
    // 96 MiB of heap: the arrays read for one page already take 64 MiB as JavaScript numbers.
    const server = await startServerProcess({ IIIF_FILE_ROOT: folder, NODE_OPTIONS: '--max-old-space-size=96', IIIF_ACCESS_LOG: 'false' });
    try {
      const base = `http://127.0.0.1:${server.port}/iiif/3/shared-huge-arrays.tif`;
      for (const url of URLS) expect((await fetch(`${base}/${url}`)).status, url).toBe(200);
      expect((await fetch(`http://127.0.0.1:${server.port}/health`)).status).toBe(200);
    } finally {
      server.child.kill('SIGKILL');
    }
  });
});
