import { open } from 'node:fs/promises';
import sharp, { type Sharp } from 'sharp';
import type { ImageMetadata } from '../metadata/types.js';
import { decodeJpeg2000, isJpeg2000, JPEG2000_SIGNATURE_BYTES } from '../jp2/wasm.js';
import { reasonOf, undecodableSource } from '../../errors.js';

export interface PyramidOptions {
  tileSize: number;
  /** JPEG quality of the stored tiles: below 90 libvips stores YCbCr, the smallest tiles. */
  quality: number;
  maxInputPixels: number;
}

/**
 * A progressive JPEG is decoded whole, every scan over every pixel, whatever region is asked
 * for: beyond about 16 tiles' worth, its pyramid pays for itself by the second tile.
 */
export const PROGRESSIVE_PYRAMID_PIXELS = 1024 * 1024;

/**
 * Whether an image is worth converting to a tiled pyramid on first touch: one stored level
 * (no smaller copies to read from) and at least `thresholdPixels` (a progressive JPEG already
 * from PROGRESSIVE_PYRAMID_PIXELS). Everything below that renders fast enough straight from the
 * file. A threshold of 0 never converts.
 */
export function wantsPyramid(metadata: Pick<ImageMetadata, 'width' | 'height' | 'levels' | 'progressive'>, thresholdPixels: number): boolean {
  if (thresholdPixels <= 0 || metadata.levels.several) return false;
  const threshold = metadata.progressive ? Math.min(thresholdPixels, PROGRESSIVE_PYRAMID_PIXELS) : thresholdPixels;
  return metadata.width * metadata.height >= threshold;
}

/**
 * Writes `source` as a tiled pyramidal TIFF at `target`: EXIF orientation applied, 8-bit sRGB,
 * every level halved down to one tile. Opaque images get JPEG tiles (the ones that can be sent
 * as they are); images with transparency keep it with lossless deflate tiles.
 */
export async function buildPyramid(source: string | Buffer, target: string, options: PyramidOptions): Promise<void> {
  const input = await openForConversion(source, options.maxInputPixels);
  const { hasAlpha } = await input.metadata();
  const tiles = { tile: true, tileWidth: options.tileSize, tileHeight: options.tileSize, pyramid: true, bigtiff: false };
  try {
    await input
      .toColourspace('srgb')
      .tiff(hasAlpha ? { ...tiles, compression: 'deflate', predictor: 'horizontal' } : { ...tiles, compression: 'jpeg', quality: options.quality })
      .toFile(target);
  } catch (error) {
    throw undecodableSource(`the stored image cannot be converted: ${reasonOf(error)}`);
  }
}

async function openForConversion(source: string | Buffer, maxInputPixels: number): Promise<Sharp> {
  if (isJpeg2000(await startOf(source))) {
    const raster = await decodeJpeg2000(source, maxInputPixels);
    const pixels = raster.depth === 16 ? new Uint16Array(raster.data.buffer, raster.data.byteOffset, raster.data.length / 2) : raster.data;
    return sharp(pixels, { raw: { width: raster.width, height: raster.height, channels: raster.channels }, limitInputPixels: maxInputPixels });
  }
  return sharp(source, { limitInputPixels: maxInputPixels }).autoOrient();
}

/** The first bytes of a file or of bytes in memory, enough to tell JPEG 2000 apart. */
async function startOf(source: string | Buffer): Promise<Buffer> {
  if (typeof source !== 'string') return source.subarray(0, JPEG2000_SIGNATURE_BYTES);
  const file = await open(source, 'r');
  try {
    const start = Buffer.alloc(JPEG2000_SIGNATURE_BYTES);
    const { bytesRead } = await file.read(start, 0, start.length, 0);
    return start.subarray(0, bytesRead);
  } finally {
    await file.close();
  }
}
