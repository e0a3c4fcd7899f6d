import sharp, { type Sharp } from 'sharp';
import { undecodableSource } from '../errors.js';
import type { Rect, RenderPlan } from '../iiif/plan.js';
import type { Format } from '../iiif/request.js';
import { describe, type ImageMetadata, type Level } from './metadata.js';

const WHITE = { r: 255, g: 255, b: 255, alpha: 1 };
const TRANSPARENT = { r: 0, g: 0, b: 0, alpha: 0 };
const HAS_ALPHA: Record<Format, boolean> = { jpg: false, png: true, webp: true, gif: true, tif: true, avif: true };

export interface Rendered {
  data: Buffer;
  /** The stored resolution the pixels came from (0 = full size). */
  level: number;
}

/**
 * The smallest stored level that still has at least as many pixels as the output needs, so
 * a zoomed-out tile decodes a small page instead of the full image.
 */
export function chooseLevel(metadata: ImageMetadata, plan: Pick<RenderPlan, 'region' | 'width' | 'height'>): Level {
  const needX = plan.width / plan.region.width;
  const needY = plan.height / plan.region.height;
  let chosen = metadata.levels[0]!;
  for (const level of metadata.levels) {
    if (level.width / metadata.width >= needX && level.height / metadata.height >= needY) chosen = level;
  }
  return chosen;
}

/** Maps a full-resolution rectangle onto a level, covering at least the same content. */
export function regionAtLevel(region: Rect, full: { width: number; height: number }, level: Level): Rect {
  const sx = level.width / full.width;
  const sy = level.height / full.height;
  const left = Math.min(level.width - 1, Math.floor(region.x * sx));
  const top = Math.min(level.height - 1, Math.floor(region.y * sy));
  const right = Math.min(level.width, Math.max(left + 1, Math.ceil((region.x + region.width) * sx)));
  const bottom = Math.min(level.height, Math.max(top + 1, Math.ceil((region.y + region.height) * sy)));
  return { x: left, y: top, width: right - left, height: bottom - top };
}

/**
 * Runs one sharp pipeline in the spec's order: region → size → mirror → rotation → quality →
 * format. Output is 8-bit sRGB (or grey) with all metadata, EXIF orientation included, stripped.
 */
export async function render(
  path: string | Buffer,
  metadata: ImageMetadata,
  plan: RenderPlan,
  maxInputPixels: number,
): Promise<Rendered> {
  const level = chooseLevel(metadata, plan);
  const region = regionAtLevel(plan.region, metadata, level);
  const opaque = !HAS_ALPHA[plan.format] || plan.quality === 'bitonal';

  let image = sharp(path, { page: level.page, limitInputPixels: maxInputPixels });
  if (metadata.autoOrient) image = image.autoOrient();
  image = image.extract({ left: region.x, top: region.y, width: region.width, height: region.height });
  if (region.width !== plan.width || region.height !== plan.height) {
    image = image.resize(plan.width, plan.height, { fit: 'fill' });
  }
  if (opaque) image = image.flatten({ background: WHITE });
  if (plan.mirror) image = image.flop();
  if (plan.degrees !== 0) image = image.rotate(plan.degrees, { background: opaque ? WHITE : TRANSPARENT });
  image = applyQuality(image, plan);

  try {
    const data = await encode(image, plan.format).toBuffer();
    return { data, level: level.page };
  } catch (error) {
    throw undecodableSource(`the stored image cannot be decoded: ${describe(error)}`);
  }
}

function applyQuality(image: Sharp, plan: RenderPlan): Sharp {
  switch (plan.quality) {
    // 'b-w' makes the output single-channel (plus alpha), not three equal channels.
    case 'gray':
      return image.grayscale().toColourspace('b-w');
    case 'bitonal':
      return image.threshold(128).toColourspace('b-w');
    default:
      return image.toColourspace('srgb');
  }
}

function encode(image: Sharp, format: Format): Sharp {
  switch (format) {
    case 'jpg':
      return image.jpeg({ quality: 85 });
    case 'png':
      return image.png({ compressionLevel: 6 });
    case 'webp':
      return image.webp({ quality: 80 });
    case 'gif':
      return image.gif();
    case 'tif':
      return image.tiff({ compression: 'lzw' });
    case 'avif':
      return image.avif({ quality: 50, effort: 2 });
  }
}
