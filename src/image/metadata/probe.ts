import sharp from 'sharp';
import { reasonOf, sourceTooLarge, undecodableSource } from '../../errors.js';
import { readTiffLayout } from '../tiles/tiff-layout.js';
import { countJpegScans } from './jpeg-scans.js';
import type { ImageMetadata, Level } from './types.js';

/**
 * Reads an image's headers (never its pixels): size, orientation, stored levels and tile layout.
 * Refuses what would cost too much to decode: too many pixels (413), or a JPEG with more than
 * `maxJpegScans` scans (422; a pass over the whole image each, see jpeg-scans.ts).
 */
export async function probe(path: string | Buffer, maxInputPixels: number, maxJpegScans = Infinity): Promise<ImageMetadata> {
  // Headers only: safe for any declared size, so the limit is checked here with a clear message.
  const meta = await sharp(path, { limitInputPixels: false }).metadata().catch((error: unknown) => {
    throw undecodableSource(`the stored image cannot be read: ${reasonOf(error)}`);
  });
  const { width, height } = meta.autoOrient;
  if (!width || !height) throw undecodableSource('the stored image has no dimensions');
  if (width * height > maxInputPixels) {
    throw sourceTooLarge(
      `the stored image is ${width}×${height} pixels, more than this server decodes (${maxInputPixels})`,
    );
  }
  // libjpeg reports "progressive" for every JPEG of more than one scan.
  const progressive = meta.format === 'jpeg' && meta.isProgressive === true;
  if (progressive && (await countJpegScans(path, maxJpegScans)) > maxJpegScans) {
    throw undecodableSource(`the stored image is a JPEG of more than ${maxJpegScans} scans, each a pass over the whole image; it is not decoded`);
  }
  const autoOrient = (meta.orientation ?? 1) > 1;
  const levels: Level[] = [{ width, height, page: 0 }];
  // Pages of a pyramidal TIFF are reduced copies. Oriented images and other multi-page files
  // (scanned documents, animations) are read from their first page only.
  if (!autoOrient && meta.format === 'tiff' && (meta.pages ?? 1) > 1) {
    for (let page = 1; page < (meta.pages ?? 1); page++) {
      const level = await sharp(path, { page, limitInputPixels: false }).metadata().catch(() => undefined);
      const last = levels[levels.length - 1]!;
      if (!level?.width || !level.height || level.width >= last.width) break;
      if (Math.abs(level.width / width - level.height / height) > 2 / Math.min(level.width, level.height)) break;
      levels.push({ width: level.width, height: level.height, page });
    }
  }
  const onDisk = typeof path === 'string';
  const tiffPages = onDisk && !autoOrient && meta.format === 'tiff' ? await readTiffLayout(path) : undefined;
  return { width, height, levels, autoOrient, tiffPages, progressive };
}
