import { badRequest } from '../errors.js';
import { formatDecimal } from './numbers.js';
import type { ApiVersion, Format, ImageRequest, OutputLimits, Quality, Region, Size } from './request.js';

export interface Dimensions {
  width: number;
  height: number;
}

export interface Rect {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** Everything the renderer needs, in full-resolution source coordinates. */
export interface RenderPlan {
  region: Rect;
  /** Output size before rotation. */
  width: number;
  height: number;
  mirror: boolean;
  /** Clockwise, 0 ≤ degrees < 360. */
  degrees: number;
  /** The image as sent: width×height turned by `degrees` (what the output limits apply to). */
  canvas: Dimensions;
  quality: Quality;
  format: Format;
  /** The canonical form of this request's parameters, e.g. "0,0,512,512/256,256/0/default.jpg". */
  canonical: string;
}

/**
 * Turns a parsed request into concrete geometry for an image of the given size. Pure; throws
 * 400 for regions outside the image, sizes that round to nothing, upscaling without permission
 * and results beyond the output limits. The limits apply to the image as sent, after rotation:
 * an arbitrary angle enlarges the canvas (10000×2500 turned 45° is 8839×8839), and a limit that
 * ignored it would let a request cost several times what maxArea promises.
 */
export function planRender(
  version: ApiVersion,
  request: ImageRequest,
  image: Dimensions,
  limits: OutputLimits,
): RenderPlan {
  const region = resolveRegion(request.region, image);
  const { mirror, degrees } = request.rotation;
  const turn = degrees % 360;
  const { width, height } = resolveSize(request.size, region, limits, turn);
  const canvas = rotatedSize({ width, height }, turn);
  const plan = { region, width, height, mirror, degrees: turn, canvas, quality: request.quality, format: request.format };
  const canonicalSize = version === 3 ? canonicalSize3(plan, limits) : canonicalSize2(plan);
  const canonical = [
    canonicalRegion(region, image),
    canonicalSize,
    `${mirror ? '!' : ''}${formatDecimal(degrees)}`,
    `${request.quality}.${request.format}`,
  ].join('/');
  return { ...plan, canonical };
}

export function resolveRegion(region: Region, image: Dimensions): Rect {
  switch (region.kind) {
    case 'full':
      return { x: 0, y: 0, width: image.width, height: image.height };
    case 'square': {
      const side = Math.min(image.width, image.height);
      return {
        x: Math.floor((image.width - side) / 2),
        y: Math.floor((image.height - side) / 2),
        width: side,
        height: side,
      };
    }
    case 'pixels':
      return clipToImage(region.x, region.y, region.w, region.h, image);
    case 'percent':
      return clipToImage(
        Math.floor((region.x * image.width) / 100),
        Math.floor((region.y * image.height) / 100),
        Math.max(1, Math.round((region.w * image.width) / 100)),
        Math.max(1, Math.round((region.h * image.height) / 100)),
        image,
      );
  }
}

function clipToImage(x: number, y: number, w: number, h: number, image: Dimensions): Rect {
  if (x >= image.width || y >= image.height) {
    throw badRequest(`region starts outside the image (${image.width}×${image.height})`);
  }
  return { x, y, width: Math.min(w, image.width - x), height: Math.min(h, image.height - y) };
}

export function resolveSize(size: Size, region: Rect, limits: OutputLimits, degrees = 0): Dimensions {
  const result = scaledSize(size, region, limits, degrees);
  if (result.width < 1 || result.height < 1) {
    throw badRequest(`requested size rounds to less than one pixel (${result.width}×${result.height})`);
  }
  const upscale = size.kind !== 'full' && size.upscale;
  if (!upscale && (result.width > region.width || result.height > region.height)) {
    throw badRequest(
      `requested size ${result.width}×${result.height} is larger than the region ` +
        `(${region.width}×${region.height}); prefix the size with ^ to allow upscaling`,
    );
  }
  const canvas = rotatedSize(result, degrees);
  const what =
    canvas.width === result.width && canvas.height === result.height
      ? `requested size ${result.width}×${result.height}`
      : `requested size ${result.width}×${result.height}, rotated to ${canvas.width}×${canvas.height},`;
  if (canvas.width > limits.maxWidth || canvas.height > limits.maxHeight) {
    throw badRequest(`${what} exceeds the limit of ${limits.maxWidth}×${limits.maxHeight}`);
  }
  if (canvas.width * canvas.height > limits.maxArea) {
    throw badRequest(`${what} exceeds the limit of ${limits.maxArea} pixels`);
  }
  return result;
}

function scaledSize(size: Size, region: Rect, limits: OutputLimits, degrees: number): Dimensions {
  const { width: rw, height: rh } = region;
  switch (size.kind) {
    case 'full':
      return { width: rw, height: rh };
    case 'max':
      return maxSize(region, limits, size.upscale, degrees);
    case 'width':
      return { width: size.w, height: Math.round((rh * size.w) / rw) };
    case 'height':
      return { width: Math.round((rw * size.h) / rh), height: size.h };
    case 'percent':
      return { width: Math.round((rw * size.n) / 100), height: Math.round((rh * size.n) / 100) };
    case 'exact':
      return { width: size.w, height: size.h };
    case 'confined': {
      // Fit inside w×h keeping the region's aspect ratio; without upscaling, never beyond the region.
      const box = size.upscale ? size : { w: Math.min(size.w, rw), h: Math.min(size.h, rh) };
      return box.w * rh <= box.h * rw
        ? { width: box.w, height: Math.min(box.h, Math.round((rh * box.w) / rw)) }
        : { width: Math.min(box.w, Math.round((rw * box.h) / rh)), height: box.h };
    }
  }
}

/**
 * The largest size with the region's aspect ratio whose canvas, turned by `degrees`, fits the
 * limits (and, unless ^max, no larger than the region). "max" stays servable at any angle: the
 * largest size available for a rotated request is what still fits once rotated.
 */
export function maxSize(region: Dimensions, limits: OutputLimits, upscale: boolean, degrees = 0): Dimensions {
  const { cos, sin } = turnFactors(degrees);
  const boxWidth = region.width * cos + region.height * sin;
  const boxHeight = region.width * sin + region.height * cos;
  let scale = Math.min(
    upscale ? Infinity : 1,
    limits.maxWidth / boxWidth,
    limits.maxHeight / boxHeight,
    Math.sqrt(limits.maxArea / (boxWidth * boxHeight)),
  );
  // Flooring keeps the exact box within the limits; the rounding of a rotated canvas (or a
  // floating-point hair) can still overshoot by a pixel, so shrink by a pixel until it fits.
  for (;;) {
    const size = { width: Math.floor(region.width * scale), height: Math.floor(region.height * scale) };
    if (withinLimits(rotatedSize(size, degrees), limits)) return size;
    scale *= 1 - 1 / Math.max(size.width, size.height);
  }
}

/**
 * The size of `size` turned by `degrees` clockwise: right angles keep or swap the sides, other
 * angles give the bounding box, rounded to whole pixels as libvips rounds it (the tests compare
 * with sharp over many sizes and angles).
 */
export function rotatedSize(size: Dimensions, degrees: number): Dimensions {
  const { cos, sin } = turnFactors(degrees);
  if (sin === 0) return { width: size.width, height: size.height };
  if (cos === 0) return { width: size.height, height: size.width };
  return {
    width: Math.round(size.width * cos + size.height * sin),
    height: Math.round(size.width * sin + size.height * cos),
  };
}

/** |cos| and |sin| of a clockwise turn, exact for right angles (Math.cos(π/2) is not 0). */
function turnFactors(degrees: number): { cos: number; sin: number } {
  const turn = ((degrees % 360) + 360) % 360;
  if (turn % 180 === 0) return { cos: 1, sin: 0 };
  if (turn % 90 === 0) return { cos: 0, sin: 1 };
  const radians = (turn * Math.PI) / 180;
  return { cos: Math.abs(Math.cos(radians)), sin: Math.abs(Math.sin(radians)) };
}

function withinLimits(canvas: Dimensions, limits: OutputLimits): boolean {
  return canvas.width <= limits.maxWidth && canvas.height <= limits.maxHeight && canvas.width * canvas.height <= limits.maxArea;
}

function canonicalRegion(region: Rect, image: Dimensions): string {
  const whole = region.x === 0 && region.y === 0 && region.width === image.width && region.height === image.height;
  return whole ? 'full' : `${region.x},${region.y},${region.width},${region.height}`;
}

/** 3.0: "max" when the result is what max gives, else "w,h" ("^w,h" when larger than the region). */
function canonicalSize3(plan: Omit<RenderPlan, 'canonical'>, limits: OutputLimits): string {
  const max = maxSize(plan.region, limits, false, plan.degrees);
  if (plan.width === max.width && plan.height === max.height) return 'max';
  const upscaled = plan.width > plan.region.width || plan.height > plan.region.height;
  return `${upscaled ? '^' : ''}${plan.width},${plan.height}`;
}

/** 2.1: "full" for the region's own size, "w," when the aspect ratio is kept, else "w,h". */
function canonicalSize2(plan: Omit<RenderPlan, 'canonical'>): string {
  const { region, width, height } = plan;
  if (width === region.width && height === region.height) return 'full';
  const keepsAspect = Math.round((region.height * width) / region.width) === height;
  return keepsAspect ? `${width},` : `${width},${height}`;
}
