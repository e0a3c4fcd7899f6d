import { createHash } from 'node:crypto';

/**
 * The objects one derivative (one source version) is made of, all under one "folder":
 * `{prefix}{source key}/{version hash}/{file}`. The pyramid and its image information are
 * written first; `complete` is written last, so its presence is what makes the others count.
 * `lease` is the claim of the container converting it.
 */
export const FILES = {
  pyramid: 'pyramid.tif',
  info: 'info.json',
  complete: 'complete',
  lease: 'lease',
} as const;

export type DerivativeFile = (typeof FILES)[keyof typeof FILES];

const KNOWN = new Set<string>(Object.values(FILES));

/** ETags travel quoted on the wire; the version is what is inside the quotes. */
export const unquote = (etag: string): string => etag.replace(/^"|"$/g, '');

/**
 * A fixed-length, key-safe name for a source version. ETags may hold quotes, dashes (multipart)
 * or, from other stores, any character; a hash keeps keys predictable and parsable from the right.
 */
export function versionHash(etag: string): string {
  return createHash('sha256').update(unquote(etag)).digest('hex').slice(0, 32);
}

export interface VersionKeys {
  /** The common prefix of the version's objects, ending in `/`. */
  dir: string;
  pyramid: string;
  info: string;
  complete: string;
  lease: string;
}

/** The key prefix of one version's objects, from its hash. */
export const versionDir = (prefix: string, sourceKey: string, hash: string): string => `${prefix}${sourceKey}/${hash}/`;

export function versionKeys(prefix: string, sourceKey: string, etag: string): VersionKeys {
  const dir = versionDir(prefix, sourceKey, versionHash(etag));
  return {
    dir,
    pyramid: dir + FILES.pyramid,
    info: dir + FILES.info,
    complete: dir + FILES.complete,
    lease: dir + FILES.lease,
  };
}

/** Where every version of one source's derivatives lives (other sources may share this prefix: "a.jpg/" also starts "a.jpg/b.png/…"). */
export const sourceDir = (prefix: string, sourceKey: string): string => `${prefix}${sourceKey}/`;

export interface ParsedKey {
  sourceKey: string;
  hash: string;
  file: DerivativeFile;
}

/**
 * The source key, version hash and file of a derivative object's key; undefined for anything
 * else under the prefix. Parsed from the right, so source keys may contain slashes.
 */
export function parseKey(prefix: string, key: string): ParsedKey | undefined {
  if (!key.startsWith(prefix)) return undefined;
  const match = /^(.+)\/([0-9a-f]{32})\/([^/]+)$/.exec(key.slice(prefix.length));
  if (!match || !KNOWN.has(match[3]!)) return undefined;
  return { sourceKey: match[1]!, hash: match[2]!, file: match[3] as DerivativeFile };
}
