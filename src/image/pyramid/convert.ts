import sharp, { type Sharp } from 'sharp';
import type { ImageMetadata } from '../metadata/types.js';
import { reasonOf, undecodableSource } from '../../errors.js';

export interface PyramidOptions {
  tileSize: number;
  /** JPEG quality of the stored tiles: below 90 libvips stores YCbCr, the smallest tiles. */
  quality: number;
  maxInputPixels: number;
}

/**
 * Whether an image is worth converting to a tiled pyramid on first touch: one stored level
 * (no smaller copies to read from) and at least `thresholdPixels`. Everything below that
 * renders fast enough straight from the file.
 */
export function wantsPyramid(metadata: Pick<ImageMetadata, 'width' | 'height' | 'levels'>, thresholdPixels: number): boolean {
  return !metadata.levels.several && metadata.width * metadata.height >= thresholdPixels;
}

/**
 * Writes `source` as a tiled pyramidal TIFF at `target`: EXIF orientation applied, 8-bit sRGB,
 * every level halved down to one tile. Opaque images get JPEG tiles (the ones that can be sent
 * as they are); images with transparency keep it with lossless deflate tiles.
 */
export async function buildPyramid(source: string | Buffer, target: string, options: PyramidOptions): Promise<void> {
  const input = openForConversion(source, options.maxInputPixels);
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

function openForConversion(source: string | Buffer, maxInputPixels: number): Sharp {
  return sharp(source, { limitInputPixels: maxInputPixels }).autoOrient();
}
