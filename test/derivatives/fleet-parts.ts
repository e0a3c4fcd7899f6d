/**
 * The parts of a fleet for derivative tests: "containers" (each its own S3 client, lease owner
 * and metrics, configured through the same environment parsing as production) in front of one
 * real S3 wire-protocol server, and real pyramids to share.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GetObjectCommand, HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import sharp from 'sharp';
import { loadConfig, type Config } from '../../src/config.js';
import { openDerivatives, type Derivatives } from '../../src/derivatives/open.js';
import type { DerivativeFiles } from '../../src/derivatives/store.js';
import { probe } from '../../src/image/metadata/probe.js';
import { buildPyramid } from '../../src/image/pyramid/convert.js';
import { Metrics } from '../../src/metrics.js';
import { quadrants } from '../fixtures.js';
import { allLevels, localFile } from '../image/local-file.js';
import { BUCKET, type S3Store } from '../source/s3-store.js';

export const PREFIX = 'derivatives/';

export interface ContainerOptions {
  leaseSeconds?: number;
  waitMs?: number;
  /** Read-back delay on stores that ignore conditional writes; short, the racers are on one machine. */
  settleMs?: number;
  env?: Record<string, string>;
}

export function fleetConfig(store: S3Store, options: ContainerOptions = {}): Config {
  const config = loadConfig({
    IIIF_SOURCE: 's3',
    IIIF_S3_BUCKET: BUCKET,
    IIIF_S3_ENDPOINT: store.endpoint,
    IIIF_S3_REGION: 'us-east-1',
    IIIF_DERIVATIVE_PREFIX: PREFIX,
    ...(options.waitMs === undefined ? {} : { IIIF_DERIVATIVE_WAIT_MS: String(options.waitMs) }),
    ...options.env,
  });
  // Leases shorter than the setting's floor of 5 s keep crash tests short.
  return options.leaseSeconds === undefined ? config : { ...config, derivatives: { ...config.derivatives!, leaseSeconds: options.leaseSeconds } };
}

/** One container's view of the derivative store. */
export function container(store: S3Store, owner: string, options: ContainerOptions = {}): Derivatives {
  return openDerivatives(fleetConfig(store, options), new Metrics(), { owner, settleMs: options.settleMs ?? 400 })!;
}

/** A real pyramid (tiled JPEG TIFF of the four-colour chart) and the metadata info.json is made from. */
export async function makePyramid(width = 1200, height = 800): Promise<DerivativeFiles> {
  const dir = await mkdtemp(join(tmpdir(), 'derivative-'));
  const flat = join(dir, 'flat.jpg');
  await sharp(await quadrants()).resize(width, height, { fit: 'fill', kernel: 'nearest' }).removeAlpha().jpeg({ quality: 95 }).toFile(flat);
  const pyramidPath = join(dir, 'pyramid.tif');
  await buildPyramid(flat, pyramidPath, { tileSize: 256, quality: 85, maxInputPixels: 100_000_000 });
  const metadata = await probe(await localFile(pyramidPath), 100_000_000);
  const levels = (await allLevels(metadata.levels)).map(({ width, height, page }) => ({ width, height, page }));
  return { pyramidPath, info: { width: metadata.width, height: metadata.height, levels } };
}

/** Every key under a prefix, as s3rver holds them (read straight from s3rver, not through the proxy). */
export async function keysUnder(store: S3Store, prefix: string): Promise<string[]> {
  const page = await store.uploader.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: prefix }));
  return (page.Contents ?? []).map((object) => object.Key!).sort();
}

export async function objectBytes(store: S3Store, key: string): Promise<Buffer> {
  const answer = await store.uploader.send(new GetObjectCommand({ Bucket: BUCKET, Key: key }));
  return Buffer.from(await answer.Body!.transformToByteArray());
}

/** The source's ETag as S3 reports it, unquoted (what SourceRef.version holds). */
export async function etagOf(store: S3Store, key: string): Promise<string> {
  const answer = await store.uploader.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
  return answer.ETag!.replace(/"/g, '');
}
