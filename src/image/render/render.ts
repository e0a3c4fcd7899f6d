import sharp, { type Sharp } from 'sharp';
import type { Encoding } from '../../config.js';
import { reasonOf, undecodableSource } from '../../errors.js';
import type { Rect, RenderPlan } from '../../iiif/plan.js';
import type { Format } from '../../iiif/request.js';
import type { LevelRead } from '../levels.js';

const WHITE = { r: 255, g: 255, b: 255, alpha: 1 };
const TRANSPARENT = { r: 0, g: 0, b: 0, alpha: 0 };
const HAS_ALPHA: Record<Format, boolean> = { jpg: false, png: true, webp: true, gif: true, tif: true, avif: true };

export interface Rendered {
  data: Buffer;
  /** The stored resolution the pixels came from (0 = full size). */
  level: number;
}

/**
 * Renders from the source file: the plan's stored level, the region mapped onto it. Output is
 * 8-bit sRGB (or grey) with all metadata, EXIF orientation included, stripped.
 */
export function render(
  path: string | Buffer,
  autoOrient: boolean,
  { level, region }: LevelRead,
  plan: RenderPlan,
  maxInputPixels: number,
  encoding: Encoding,
): Promise<Rendered> {
  let image = sharp(path, { page: level.page, limitInputPixels: maxInputPixels });
  if (autoOrient) image = image.autoOrient();
  // Without an extract sharp can shrink JPEG and WebP while decoding (shrink-on-load).
  const whole = region.width === level.width && region.height === level.height;
  return renderFrom(image, whole ? undefined : region, plan, level.page, encoding);
}

/**
 * Runs one sharp pipeline in the spec's order: region → size → mirror → rotation → quality →
 * format. `input` is the decoded source (a file's level, or a single stored tile).
 */
export async function renderFrom(input: Sharp, region: Rect | undefined, plan: RenderPlan, level: number, encoding: Encoding): Promise<Rendered> {
  const opaque = !HAS_ALPHA[plan.format] || plan.quality === 'bitonal';
  let image = input;
  if (region) image = image.extract({ left: region.x, top: region.y, width: region.width, height: region.height });
  image = image.resize(plan.width, plan.height, { fit: 'fill' });
  if (opaque) image = image.flatten({ background: WHITE });
  if (plan.mirror) image = image.flop();
  if (plan.degrees !== 0) image = image.rotate(plan.degrees, { background: opaque ? WHITE : TRANSPARENT });
  image = applyQuality(image, plan);
  try {
    const data = await encode(image, plan.format, encoding).toBuffer();
    return { data, level };
  } catch (error) {
    throw undecodableSource(`the stored image cannot be decoded: ${reasonOf(error)}`);
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

function encode(image: Sharp, format: Format, encoding: Encoding): Sharp {
  switch (format) {
    case 'jpg':
      // Standard Huffman tables, as libjpeg writes by default: optimised ones make a tile a few
      // per cent smaller for a second pass that cost more than the whole decode (0.9 of 2.8 ms
      // of CPU for a 300×300 scan-like tile, measured here). Same pixels either way.
      return image.jpeg({ quality: encoding.jpegQuality, optimiseCoding: false });
    case 'png':
      return image.png({ compressionLevel: encoding.pngCompression });
    case 'webp':
      return image.webp({ quality: encoding.webpQuality });
    case 'gif':
      return image.gif();
    case 'tif':
      return image.tiff({ compression: 'lzw' });
    case 'avif':
      return image.avif({ quality: encoding.avifQuality, effort: encoding.avifEffort });
  }
}
