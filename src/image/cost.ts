import { renderTooLarge } from '../errors.js';
import type { RenderPlan } from '../iiif/plan.js';
import type { Format } from '../iiif/request.js';
import type { Lane } from './admission.js';
import type { LevelRead } from './levels.js';

/**
 * Seconds per megapixel to encode the output canvas, on one core of the 2-core reference
 * machine (sharp 0.34, the encoder settings of render.ts): the worse of a photograph-like image
 * and Gaussian noise, rounded up, because a client picks the costliest image there is. The slow
 * encoders are the point: palette quantisation for GIF took 7 s per megapixel on noise (29 s
 * for a 25 megapixel photograph), AVIF 1.3–1.8, against 0.06 for JPEG. They are also the ones
 * sharp's timeout cannot stop (a 4 megapixel GIF of noise with a 2 s timeout ran 19 s).
 */
const ENCODE_SECONDS_PER_MEGAPIXEL: Record<Format, number> = { jpg: 0.07, tif: 0.4, png: 0.6, webp: 1.3, gif: 8, avif: 2 };

/**
 * Decoding and resampling the region read, seconds per megapixel of it. libvips: JPEG, PNG,
 * WebP, TIFF (progressive JPEGs are bounded apart: see metadata/jpeg-scans.ts). OpenJPEG: about
 * 0.1 s of CPU per 256×256 region at its level (measured on 12000×9000 JPEG 2000), and it cannot
 * be stopped once started either.
 */
const DECODE_SECONDS_PER_MEGAPIXEL = { libvips: 0.03, openjpeg: 1.6 } as const;

export type Decoder = keyof typeof DECODE_SECONDS_PER_MEGAPIXEL;

/**
 * Working memory of the encoder beyond the RGBA canvas, bytes per canvas pixel, measured the
 * same way: AVIF (libheif/aom) and GIF (palette quantisation) hold several copies of the image;
 * the others stream it. A 25 megapixel AVIF peaked at 800 MB, where 4 bytes per pixel said 115 MB.
 */
const ENCODER_BYTES_PER_PIXEL: Record<Format, number> = { jpg: 0, tif: 0, png: 0, webp: 4, gif: 24, avif: 32 };

export interface RenderCost {
  /** Estimated peak memory, in bytes. */
  memoryBytes: number;
  /** Estimated time on one quiet reference core, in seconds. */
  seconds: number;
  /** The same time as output pixels of a JPEG would take: what the lanes are sized in. */
  jpegPixels: number;
}

/**
 * What a render costs, from the plan alone: the region decoded at the chosen level (by libvips,
 * or by OpenJPEG for JPEG 2000), the output, the rotated canvas (arbitrary angles make an
 * enlarged copy), and the encoder's own share, which for AVIF and GIF dwarfs the rest.
 */
export function renderCost(plan: Pick<RenderPlan, 'width' | 'height' | 'degrees' | 'canvas' | 'format'>, read: Pick<LevelRead, 'region'>, decoder: Decoder = 'libvips'): RenderCost {
  const decoded = read.region.width * read.region.height;
  const output = plan.width * plan.height;
  const canvas = plan.canvas.width * plan.canvas.height;
  const rotatedCopy = plan.degrees % 90 === 0 ? 0 : canvas;
  const encodeSeconds = (canvas * ENCODE_SECONDS_PER_MEGAPIXEL[plan.format]) / 1e6;
  return {
    memoryBytes: 4 * (decoded + output + rotatedCopy) + ENCODER_BYTES_PER_PIXEL[plan.format] * canvas,
    seconds: (decoded * DECODE_SECONDS_PER_MEGAPIXEL[decoder]) / 1e6 + encodeSeconds,
    jpegPixels: Math.round((encodeSeconds * 1e6) / ENCODE_SECONDS_PER_MEGAPIXEL.jpg),
  };
}

export interface CostLimits {
  /** Estimated memory one render may use. */
  renderMemoryBytes: number;
  /** How long a render may take; sharp stops it then, but the AVIF and GIF encoders cannot be stopped. */
  renderTimeoutSeconds: number;
  /** JPEG-equivalent output pixels above which a render goes to the expensive lane. */
  largeRenderPixels: number;
}

/**
 * The lane a render of this cost waits in, or 413 at once for one that could never fit: more
 * memory than one render may use, or more time than its deadline. The time is refused up front
 * because the AVIF and GIF encoders do not stop when sharp's timeout fires (a 25 megapixel AVIF
 * with a 5 s timeout ran 31 s): only not starting them bounds them.
 */
export function laneFor(cost: RenderCost, format: Format, limits: CostLimits): Lane {
  const mib = (bytes: number) => Math.ceil(bytes / 2 ** 20);
  if (cost.memoryBytes > limits.renderMemoryBytes) {
    throw renderTooLarge(
      `this request needs about ${mib(cost.memoryBytes)} MiB to render as ${format}, more than the ` +
        `${mib(limits.renderMemoryBytes)} MiB allowed; ask for a smaller region or size`,
    );
  }
  if (cost.seconds > limits.renderTimeoutSeconds) {
    throw renderTooLarge(
      `this request would take about ${Math.ceil(cost.seconds)} s to render as ${format}, more than the ` +
        `${limits.renderTimeoutSeconds} s a render may take; ask for a smaller size${format === 'gif' || format === 'avif' ? ', or jpg, png or webp' : ''}`,
    );
  }
  return cost.jpegPixels > limits.largeRenderPixels ? 'expensive' : 'cheap';
}
