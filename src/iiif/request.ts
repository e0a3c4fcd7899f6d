/** The parsed, version-neutral form of an image request. Produced by parse.ts, consumed by plan.ts. */

export type ApiVersion = 2 | 3;

export type Region =
  | { kind: 'full' }
  | { kind: 'square' }
  | { kind: 'pixels'; x: number; y: number; w: number; h: number }
  | { kind: 'percent'; x: number; y: number; w: number; h: number };

/**
 * `upscale` is true when the request may produce an image larger than its region: in 3.0 only
 * with the `^` prefix, in 2.1 always (the sizeAboveFull feature) except for `full` and `max`.
 */
export type Size =
  | { kind: 'max'; upscale: boolean }
  | { kind: 'full' }
  | { kind: 'width'; w: number; upscale: boolean }
  | { kind: 'height'; h: number; upscale: boolean }
  | { kind: 'percent'; n: number; upscale: boolean }
  | { kind: 'exact'; w: number; h: number; upscale: boolean }
  | { kind: 'confined'; w: number; h: number; upscale: boolean };

export interface Rotation {
  mirror: boolean;
  degrees: number;
}

export const QUALITIES = ['default', 'color', 'gray', 'bitonal'] as const;
export type Quality = (typeof QUALITIES)[number];

/** Output formats we render, in the order info.json lists them. jpg and png are level 2's own. */
export const FORMATS = ['jpg', 'png', 'webp', 'gif', 'tif', 'avif'] as const;
export type Format = (typeof FORMATS)[number];

export const MEDIA_TYPES: Record<Format, string> = {
  jpg: 'image/jpeg',
  png: 'image/png',
  webp: 'image/webp',
  gif: 'image/gif',
  tif: 'image/tiff',
  avif: 'image/avif',
};

export interface ImageRequest {
  region: Region;
  size: Size;
  rotation: Rotation;
  quality: Quality;
  format: Format;
}

/** Output limits, advertised in info.json as maxWidth/maxHeight/maxArea. */
export interface OutputLimits {
  maxWidth: number;
  maxHeight: number;
  maxArea: number;
}
