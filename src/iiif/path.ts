import { badRequest, notFound } from '../errors.js';

/** What a path under /iiif/{version}/ asks for, with every segment percent-decoded once. */
export type IiifTarget =
  | { kind: 'base'; identifier: string }
  | { kind: 'info'; identifier: string }
  | { kind: 'image'; identifier: string; region: string; size: string; rotation: string; qualityAndFormat: string };

/**
 * Splits the raw (still encoded) remainder of the path. Working on the raw path is what lets a
 * `/` inside an identifier arrive as `%2F` and be told apart from a real segment separator:
 * `a%2Fb/info.json` is the identifier "a/b", while `a/b/info.json` is an extra segment (404).
 */
export function parseIiifPath(rawRest: string): IiifTarget {
  const segments = rawRest.split('/').map(decodeSegment);
  const [identifier, ...params] = segments;
  if (!identifier) throw notFound('no identifier in the path');
  if (params.length === 0) return { kind: 'base', identifier };
  if (params.length === 1 && params[0] === 'info.json') return { kind: 'info', identifier };
  if (params.length === 4) {
    const [region, size, rotation, qualityAndFormat] = params as [string, string, string, string];
    return { kind: 'image', identifier, region, size, rotation, qualityAndFormat };
  }
  throw notFound('not a IIIF path: expected {identifier}/info.json or {identifier}/{region}/{size}/{rotation}/{quality}.{format}');
}

/** One path segment, percent-decoded once; a malformed escape is a 400. */
export function decodeSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw badRequest('malformed percent-encoding in the path');
  }
}
