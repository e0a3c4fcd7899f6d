/**
 * Every in-memory cache key in one place. Keys join their parts with NUL, which no identifier,
 * ETag or canonical request can contain (identifiers with control characters are refused), so
 * two different tuples never make the same key and an identifier's keys share one prefix.
 */
const SEPARATOR = '\u0000';

const join = (...parts: string[]): string => parts.join(SEPARATOR);

/** One version of one source image: metadata, preparation and pyramid builds. */
export const versionKey = (identifier: string, version: string): string => join(identifier, version);

/** The prefix every key of an identifier starts with, whatever the version (for purges). */
export const identifierPrefix = (identifier: string): string => identifier + SEPARATOR;

/** A rendered result or a plan: the source version plus the canonical (or raw) request. */
export const requestKey = (identifier: string, version: string, request: string): string => join(identifier, version, request);

/** An info.json document: the source version, the API version, its public id and media type. */
export const infoKey = (identifier: string, version: string, apiVersion: number, id: string, contentType: string): string =>
  join(identifier, version, String(apiVersion), id, contentType);

/** An open file: its path and the source version it holds. */
export const fileKey = (path: string, version: string): string => join(path, version);
