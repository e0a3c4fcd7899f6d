import sharp, { type Metadata } from 'sharp';
import { reasonOf, sourceTooLarge, undecodableSource } from '../../errors.js';
import { head } from '../../source/range-reader.js';
import type { ImageFile } from '../../source/source.js';
import { TiffLayout } from '../tiles/tiff-layout.js';
import { decoding } from '../vanished.js';
import { countJpegScans } from './jpeg-scans.js';
import { isReducedCopy, listedLevels, tiffLevels } from './stored-levels.js';
import type { ImageMetadata, Level } from './types.js';

/**
 * How much of the start of a file is handed to libvips for its header: JPEG's frame header
 * follows its EXIF and ICC segments, usually within the first few KiB; PNG's, WebP's and GIF's
 * are at the very start. Headers further in are read from the whole file.
 */
const HEADER_BYTES = 64 * 1024;

/**
 * Reads an image's headers (never its pixels): size, orientation and stored levels. A tiled
 * TIFF is read by range — its first directory only; smaller levels when a request needs them —
 * so a remote pyramid answers without being downloaded. Other formats go to libvips: with the
 * first bytes of the file when their header is there, else with the whole file. Refuses what
 * would cost too much to decode: too many pixels (413), or a JPEG of more than `maxJpegScans`
 * scans (422; a pass over the whole image each, see jpeg-scans.ts).
 */
export async function probe(file: ImageFile, maxInputPixels: number, maxJpegScans = Infinity): Promise<ImageMetadata> {
  const layout = await TiffLayout.open(file.reader);
  // Oriented TIFFs are turned by libvips as it decodes the whole page.
  if (layout && layout.first.orientation === 1) {
    checkPixels(layout.first.width, layout.first.height, maxInputPixels);
    // Whether the next page is a smaller copy (or a thumbnail, a scan's next page) decides
    // whether a pyramid is built: a local file's costs nothing to read; a remote one's would
    // cost a request info.json does not wait for, so a remote TIFF naming more pages is taken
    // for a pyramid.
    const several = layout.hasMorePages && (!file.onDisk || (await tiffLevels(layout, true).at(1)) !== undefined);
    return { width: layout.first.width, height: layout.first.height, autoOrient: false, levels: tiffLevels(layout, several) };
  }
  const start = await head(file.reader, HEADER_BYTES);
  // A TIFF's directory can be anywhere in the file: libvips needs all of it.
  const fromHeader = isTiff(start) ? undefined : await headerOf(start).catch(() => undefined);
  const input = fromHeader ? undefined : await file.whole();
  const meta = fromHeader ?? (await decoding(input!, headerOf));
  const { width, height } = meta.autoOrient;
  if (!width || !height) throw undecodableSource('the stored image has no dimensions');
  checkPixels(width, height, maxInputPixels);
  // libjpeg reports "progressive" for every JPEG of more than one scan.
  const progressive = meta.format === 'jpeg' && meta.isProgressive === true;
  if (progressive && (await countJpegScans(file.reader, maxJpegScans)) > maxJpegScans) {
    throw undecodableSource(`the stored image is a JPEG of more than ${maxJpegScans} scans, each a pass over the whole image; it is not decoded`);
  }
  const autoOrient = (meta.orientation ?? 1) > 1;
  const full: Level = { width, height, page: 0, tiles: undefined };
  // Pages of a pyramidal TIFF are reduced copies. Oriented images and other multi-page files
  // (scanned documents, animations) are read from their first page only.
  const pages = !autoOrient && meta.format === 'tiff' ? (meta.pages ?? 1) : 1;
  const levels = [full];
  for (let page = 1; page < pages; page++) {
    const level = await sharp(input!, { page, limitInputPixels: false }).metadata().catch(() => undefined);
    const size = { width: level?.width ?? 0, height: level?.height ?? 0 };
    if (!isReducedCopy(size, levels[levels.length - 1]!, full)) break;
    levels.push({ ...size, page, tiles: undefined });
  }
  return { width, height, autoOrient, levels: listedLevels(levels), progressive };
}

/**
 * The header as libvips reads it: safe for any declared size, so the limit is checked by the
 * caller. Async as a whole, because sharp throws at once for some inputs (an empty file).
 */
async function headerOf(input: string | Buffer): Promise<Metadata> {
  try {
    return await sharp(input, { limitInputPixels: false }).metadata();
  } catch (error) {
    throw undecodableSource(`the stored image cannot be read: ${reasonOf(error)}`);
  }
}

function checkPixels(width: number, height: number, maxInputPixels: number): void {
  if (width * height > maxInputPixels) {
    throw sourceTooLarge(`the stored image is ${width}×${height} pixels, more than this server decodes (${maxInputPixels})`);
  }
}

/** "II*\0" or "MM\0*": a classic TIFF; BigTIFF has 43 instead of 42. */
function isTiff(start: Buffer): boolean {
  const magic = start.toString('latin1', 0, 4);
  return magic === 'II*\u0000' || magic === 'MM\u0000*' || magic === 'II+\u0000' || magic === 'MM\u0000+';
}
