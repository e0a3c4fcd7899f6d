import { badRequest } from '../errors.js';
import { parseDecimal, parseInteger, splitExactly } from './numbers.js';
import {
  FORMATS,
  QUALITIES,
  type ApiVersion,
  type Format,
  type ImageRequest,
  type Quality,
  type Region,
  type Rotation,
  type Size,
} from './request.js';

/**
 * Parses the four path segments after the identifier. Pure: throws IiifError 400 for anything
 * malformed or unsupported (the spec asks for 400 for unsupported qualities and formats) and
 * nothing else.
 */
export function parseImageRequest(
  version: ApiVersion,
  region: string,
  size: string,
  rotation: string,
  qualityAndFormat: string,
): ImageRequest {
  const { quality, format } = parseQualityAndFormat(qualityAndFormat);
  return {
    region: parseRegion(region),
    size: version === 3 ? parseSize3(size) : parseSize2(size),
    rotation: parseRotation(rotation),
    quality,
    format,
  };
}

export function parseRegion(text: string): Region {
  if (text === 'full' || text === 'square') return { kind: text };
  const percent = text.startsWith('pct:');
  const parts = splitExactly(percent ? text.slice(4) : text, 4, 'region');
  const parse = percent ? parseDecimal : parseInteger;
  const [x, y, w, h] = parts.map((part, i) => parse(part, `region ${'xywh'[i]}`)) as [number, number, number, number];
  if (w === 0 || h === 0) throw badRequest(`region width and height must be greater than zero, got "${text}"`);
  return { kind: percent ? 'percent' : 'pixels', x, y, w, h };
}

/** 3.0 sizes: max, w,, ,h, pct:n, w,h, !w,h, each optionally prefixed with ^ to allow upscaling. */
export function parseSize3(text: string): Size {
  const upscale = text.startsWith('^');
  const body = upscale ? text.slice(1) : text;
  if (body === 'max') return { kind: 'max', upscale };
  if (body === 'full') throw badRequest('size "full" is not valid in IIIF Image API 3.0; use "max"');
  return parseScaledSize(body, upscale, text);
}

/** 2.1 sizes: full, max, w,, ,h, pct:n, w,h, !w,h. No ^; upscaling is implied (sizeAboveFull). */
export function parseSize2(text: string): Size {
  if (text === 'full') return { kind: 'full' };
  if (text === 'max') return { kind: 'max', upscale: false };
  if (text.startsWith('^')) throw badRequest('the "^" size prefix is not valid in IIIF Image API 2.1');
  return parseScaledSize(text, true, text);
}

function parseScaledSize(body: string, upscale: boolean, original: string): Size {
  if (body.startsWith('pct:')) {
    const n = parseDecimal(body.slice(4), 'size percentage');
    if (n === 0) throw badRequest('size percentage must be greater than zero');
    return { kind: 'percent', n, upscale };
  }
  const confined = body.startsWith('!');
  const [wText, hText] = splitExactly(confined ? body.slice(1) : body, 2, 'size') as [string, string];
  if (wText === '' && hText === '') throw badRequest(`size needs a width, a height or both, got "${original}"`);
  if (confined || (wText !== '' && hText !== '')) {
    const w = parseInteger(wText, 'size width');
    const h = parseInteger(hText, 'size height');
    return { kind: confined ? 'confined' : 'exact', w, h, upscale };
  }
  if (hText === '') return { kind: 'width', w: parseInteger(wText, 'size width'), upscale };
  return { kind: 'height', h: parseInteger(hText, 'size height'), upscale };
}

export function parseRotation(text: string): Rotation {
  const mirror = text.startsWith('!');
  const degrees = parseDecimal(mirror ? text.slice(1) : text, 'rotation');
  if (degrees > 360) throw badRequest(`rotation must be between 0 and 360, got "${text}"`);
  return { mirror, degrees };
}

export function parseQualityAndFormat(text: string): { quality: Quality; format: Format } {
  const dot = text.lastIndexOf('.');
  if (dot <= 0) throw badRequest(`expected {quality}.{format}, got "${text}"`);
  const quality = text.slice(0, dot);
  const format = text.slice(dot + 1);
  if (!isOneOf(QUALITIES, quality)) {
    throw badRequest(`unknown quality "${quality}"; use one of ${QUALITIES.join(', ')}`);
  }
  if (!isOneOf(FORMATS, format)) {
    throw badRequest(`unsupported format "${format}"; use one of ${FORMATS.join(', ')}`);
  }
  return { quality, format };
}

function isOneOf<T extends string>(values: readonly T[], value: string): value is T {
  return (values as readonly string[]).includes(value);
}
