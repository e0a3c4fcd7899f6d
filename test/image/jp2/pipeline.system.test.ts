/**
 * JPEG 2000 through the real app: info.json from the header alone, tiles decoded by OpenJPEG at
 * the level and region they need, with the pixels opj_decompress gives, behind the same result
 * cache, ETags and error statuses as every other source. Needs Debian's OpenJPEG and the addon
 * (scripts/system/openjpeg.sh).
 */
import { copyFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { appFor } from '../../http/helpers.js';
import { opjCompress, opjDecompress, photoPng, SAMPLE_HEIGHT, SAMPLE_WIDTH } from './fixtures.js';

let root: string;
let work: string;
let app: FastifyInstance;

beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'jp2-app-'));
  work = await mkdtemp(join(tmpdir(), 'jp2-work-'));
  const rgb = { bytes: await photoPng(SAMPLE_WIDTH, SAMPLE_HEIGHT, 3), ext: 'png' };
  // As archives make them: 6 decomposition levels, RPCL, precincts, quality layers.
  const archival = await opjCompress(work, 'archival.jp2', rgb, ['-n', '6', '-p', 'RPCL', '-c', '[256,256],[256,256],[128,128]', '-r', '40,20,10']);
  await copyFile(archival, join(root, 'archival.jp2'));
  const whole = await readFile(archival);
  // The header intact, the coded data cut short.
  await writeFile(join(root, 'truncated.jp2'), whole.subarray(0, Math.floor(whole.length / 3)));
  // SIZ claims 200000×200000 (Xsiz, Ysiz follow the marker, its length and Rsiz).
  const lying = Buffer.from(whole);
  const siz = lying.indexOf(Buffer.from([0xff, 0x51]));
  lying.writeUInt32BE(200_000, siz + 6);
  lying.writeUInt32BE(200_000, siz + 10);
  await writeFile(join(root, 'lying.jp2'), lying);
  app = await appFor(root);
});
afterAll(async () => {
  await app.close();
  await rm(root, { recursive: true, force: true });
  await rm(work, { recursive: true, force: true });
});

/** Largest per-sample difference between our PNG and opj_decompress's pixels of the same area. */
async function differenceFromOpenJpeg(png: Buffer, reduce: number, area: number[], path = join(root, 'archival.jp2')): Promise<number> {
  const reference = await opjDecompress(path, work, reduce, area);
  const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([reference.width, reference.height, reference.channels]);
  let worst = 0;
  for (let i = 0; i < data.length; i++) worst = Math.max(worst, Math.abs(data[i]! - reference.samples[i]!));
  return worst;
}

describe('JPEG 2000 served natively', () => {
  it('answers info.json from the header: size, and a tile scale factor per resolution level', async () => {
    const response = await app.inject('/iiif/3/archival.jp2/info.json');
    expect(response.statusCode).toBe(200);
    const info = response.json();
    expect([info.width, info.height]).toEqual([SAMPLE_WIDTH, SAMPLE_HEIGHT]);
    // Powers of two (OpenJPEG's reduce levels) until one 256-px tile covers the image.
    expect(info.tiles[0].scaleFactors).toEqual([1, 2, 4, 8]);
    expect(info.sizes).toContainEqual({ width: 600, height: 450 });
  });

  it('decodes a full-resolution tile with exactly the pixels OpenJPEG gives', async () => {
    const tile = await app.inject('/iiif/3/archival.jp2/256,512,256,256/256,/0/default.png');
    expect(tile.statusCode).toBe(200);
    expect(tile.headers['x-iiif-render']).toBe('jp2; cache=miss');
    expect(tile.headers['x-iiif-source-level']).toBe('0');
    expect(await differenceFromOpenJpeg(tile.rawPayload, 0, [256, 512, 512, 768])).toBe(0);
  });

  it('decodes a zoomed-out tile at the reduced resolution that fits, not at full size', async () => {
    const tile = await app.inject('/iiif/3/archival.jp2/0,0,1024,1024/256,/0/default.png');
    expect(tile.statusCode).toBe(200);
    expect(tile.headers['x-iiif-source-level']).toBe('2');
    expect(await differenceFromOpenJpeg(tile.rawPayload, 2, [0, 0, 1024, 900])).toBe(0);
  });

  it('goes through the same result cache, ETags and renders as every source', async () => {
    const url = '/iiif/3/archival.jp2/full/300,/90/gray.jpg';
    const first = await app.inject(url);
    expect(first.statusCode).toBe(200);
    expect(await sharp(first.rawPayload).metadata()).toMatchObject({ width: 225, height: 300, channels: 1 });
    const again = await app.inject(url);
    expect(again.headers['x-iiif-render']).toBe('jp2; cache=hit');
    const conditional = await app.inject({ url, headers: { 'if-none-match': String(first.headers.etag) } });
    expect(conditional.statusCode).toBe(304);
  });

  it('refuses damaged and lying files with a 4xx for that image, and keeps serving', async () => {
    const truncated = await app.inject('/iiif/3/truncated.jp2/0,0,256,256/256,/0/default.jpg');
    expect(truncated.statusCode).toBe(422);
    expect(truncated.body).not.toContain(root);
    const lying = await app.inject('/iiif/3/lying.jp2/info.json');
    expect([413, 422]).toContain(lying.statusCode);
    expect((await app.inject('/iiif/3/archival.jp2/0,0,256,256/256,/0/default.jpg')).statusCode).toBe(200);
  });

  it('serves a file replaced on disk from its new bytes, not from a decoder kept for the old ones', async () => {
    const fresh = await appFor(root, { IIIF_SOURCE_RECHECK_MS: '0' });
    try {
      const path = join(root, 'replaced.jp2');
      await copyFile(join(root, 'archival.jp2'), path);
      const url = '/iiif/3/replaced.jp2/256,512,256,256/256,/0/default.png';
      const before = await fresh.inject(url);
      expect(await differenceFromOpenJpeg(before.rawPayload, 0, [256, 512, 512, 768], path)).toBe(0);
      // Another picture of the same size and coding (photoPng's grain is random), so only the pixels tell them apart.
      const other = await opjCompress(work, 'other.jp2', { bytes: await photoPng(SAMPLE_WIDTH, SAMPLE_HEIGHT, 3), ext: 'png' }, ['-n', '6', '-p', 'RPCL', '-r', '40,20,10']);
      await copyFile(other, path);
      const after = await fresh.inject(url);
      expect(after.statusCode).toBe(200);
      expect(after.headers.etag).not.toBe(before.headers.etag);
      expect(after.rawPayload.equals(before.rawPayload)).toBe(false);
      expect(await differenceFromOpenJpeg(after.rawPayload, 0, [256, 512, 512, 768], path)).toBe(0);
    } finally {
      await fresh.close();
    }
  });
});
