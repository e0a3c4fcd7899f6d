import { badRequest } from '../errors.js';

// The spec allows plain decimal digits only: no signs, exponents, hex, spaces or empty parts.
const INTEGER = /^\d+$/;
const DECIMAL = /^(?:\d+(?:\.\d*)?|\.\d+)$/;
// Guards against values that parse but are absurd (and against float precision loss).
const MAX_PIXEL_VALUE = 1_000_000_000;

/** A non-negative integer pixel value, e.g. a region offset or a size. */
export function parseInteger(text: string, what: string): number {
  if (!INTEGER.test(text)) throw badRequest(`${what} must be a non-negative integer, got "${text}"`);
  const value = Number(text);
  if (value > MAX_PIXEL_VALUE) throw badRequest(`${what} is too large: ${text}`);
  return value;
}

/** A non-negative decimal such as a percentage or an angle. */
export function parseDecimal(text: string, what: string): number {
  if (!DECIMAL.test(text)) throw badRequest(`${what} must be a non-negative number, got "${text}"`);
  const value = Number(text);
  if (!Number.isFinite(value) || value > MAX_PIXEL_VALUE) throw badRequest(`${what} is too large: ${text}`);
  return value;
}

/** Splits "a,b,c" into exactly `count` parts or fails with a message naming the parameter. */
export function splitExactly(text: string, count: number, what: string): string[] {
  const parts = text.split(',');
  if (parts.length !== count) throw badRequest(`${what} needs ${count} comma-separated values, got "${text}"`);
  return parts;
}

/** Shortest decimal form of a number: 90 → "90", 22.50 → "22.5". */
export function formatDecimal(value: number): string {
  return String(Number(value.toFixed(6)));
}
