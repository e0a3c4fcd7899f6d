import { notFound } from '../errors.js';

/**
 * Checks a decoded identifier before it goes near a file system or an object key. Anything
 * that could step outside the source root, or that no sane collection uses, is refused as
 * "not found" so a probe learns nothing about what exists.
 */
export function checkIdentifier(identifier: string): string {
  const refuse = (): never => {
    throw notFound(`no image with identifier "${printable(identifier)}"`);
  };
  if (identifier.length === 0 || identifier.length > 1024) refuse();
  // NUL and other control characters, and backslashes (a path separator on other systems).
  if (/[\u0000-\u001f\u007f\\]/.test(identifier)) refuse();
  if (identifier.startsWith('/')) refuse();
  for (const segment of identifier.split('/')) {
    if (segment === '' || segment === '.' || segment === '..') refuse();
  }
  return identifier;
}

/** Whether checkIdentifier accepts the identifier (for listings, which skip what cannot be served). */
export function isServable(identifier: string): boolean {
  try {
    checkIdentifier(identifier);
    return true;
  } catch {
    return false;
  }
}

/** Keeps hostile identifiers from writing control characters into messages and logs. */
export function printable(text: string): string {
  const cleaned = text.replace(/[\u0000-\u001f\u007f]/g, '?');
  return cleaned.length > 200 ? `${cleaned.slice(0, 200)}…` : cleaned;
}
