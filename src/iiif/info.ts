import { FORMATS, QUALITIES, type ApiVersion, type OutputLimits } from './request.js';
import type { Dimensions } from './plan.js';

export const CONTEXT: Record<ApiVersion, string> = {
  2: 'http://iiif.io/api/image/2/context.json',
  3: 'http://iiif.io/api/image/3/context.json',
};

export const PROFILE: Record<ApiVersion, string> = {
  2: 'http://iiif.io/api/image/2/level2.json',
  3: 'http://iiif.io/api/image/3/level2.json',
};

/** Formats beyond level 2's jpg and png. */
const EXTRA_FORMATS = FORMATS.filter((f) => f !== 'jpg' && f !== 'png');

/** Features beyond level 2, named as each version names them (3.0 renamed sizeAboveFull). */
const EXTRA_FEATURES: Record<ApiVersion, string[]> = {
  3: ['canonicalLinkHeader', 'mirroring', 'profileLinkHeader', 'rotationArbitrary', 'sizeUpscaling'],
  2: [
    'baseUriRedirect',
    'canonicalLinkHeader',
    'cors',
    'jsonldMediaType',
    'mirroring',
    'profileLinkHeader',
    'regionByPct',
    'regionByPx',
    'regionSquare',
    'rotationArbitrary',
    'rotationBy90s',
    'sizeAboveFull',
    'sizeByConfinedWh',
    'sizeByDistortedWh',
    'sizeByH',
    'sizeByPct',
    'sizeByW',
    'sizeByWh',
  ],
};

export interface TileLayout {
  tileSize: number;
  /** Powers of two, smallest first, up to the one at which the whole image fits in one tile. */
  scaleFactors: number[];
  /** Whole-image sizes, smallest first, one per scale factor that fits within the limits. */
  sizes: Dimensions[];
}

/**
 * The deep-zoom layout of an image: each scale factor halves the previous level, rounding up,
 * as viewers compute it. Listing only sizes within the limits keeps every advertised size servable.
 */
export function tileLayout(image: Dimensions, tileSize: number, limits: OutputLimits): TileLayout {
  const scaleFactors = [1];
  while (Math.max(image.width, image.height) / scaleFactors[scaleFactors.length - 1]! > tileSize) {
    scaleFactors.push(scaleFactors[scaleFactors.length - 1]! * 2);
  }
  const sizes = scaleFactors
    .map((factor) => ({ width: Math.ceil(image.width / factor), height: Math.ceil(image.height / factor) }))
    .filter(
      (s) => s.width <= limits.maxWidth && s.height <= limits.maxHeight && s.width * s.height <= limits.maxArea,
    )
    .reverse();
  return { tileSize, scaleFactors, sizes };
}

export interface InfoInput {
  /** The image's base URI as the client reached it: {scheme}://{host}/iiif/{v}/{identifier}. */
  id: string;
  image: Dimensions;
  layout: TileLayout;
  limits: OutputLimits;
}

/** info.json for Image API 3.0. `@context` is the first key, as the spec asks. */
export function buildInfo3({ id, image, layout, limits }: InfoInput): Record<string, unknown> {
  return {
    '@context': CONTEXT[3],
    id,
    type: 'ImageService3',
    protocol: 'http://iiif.io/api/image',
    profile: 'level2',
    width: image.width,
    height: image.height,
    maxWidth: limits.maxWidth,
    maxHeight: limits.maxHeight,
    maxArea: limits.maxArea,
    sizes: layout.sizes,
    tiles: [{ width: layout.tileSize, height: layout.tileSize, scaleFactors: layout.scaleFactors }],
    extraFormats: EXTRA_FORMATS,
    extraQualities: QUALITIES.filter((q) => q !== 'default'),
    extraFeatures: EXTRA_FEATURES[3],
  };
}

/** info.json for Image API 2.1: `@id`, and the profile as [level URI, description]. */
export function buildInfo2({ id, image, layout, limits }: InfoInput): Record<string, unknown> {
  return {
    '@context': CONTEXT[2],
    '@id': id,
    protocol: 'http://iiif.io/api/image',
    width: image.width,
    height: image.height,
    sizes: layout.sizes,
    tiles: [{ width: layout.tileSize, height: layout.tileSize, scaleFactors: layout.scaleFactors }],
    profile: [
      PROFILE[2],
      {
        formats: [...FORMATS],
        qualities: [...QUALITIES],
        supports: EXTRA_FEATURES[2],
        maxWidth: limits.maxWidth,
        maxHeight: limits.maxHeight,
        maxArea: limits.maxArea,
      },
    ],
  };
}

export const buildInfo: Record<ApiVersion, (input: InfoInput) => Record<string, unknown>> = {
  2: buildInfo2,
  3: buildInfo3,
};
