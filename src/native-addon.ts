import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { projectRoot } from './paths.js';

/** An optional native addon once loaded, or why it is not there (for logs: it may name files on this machine). */
export type LoadedAddon<T> = { addon: T } | { reason: string };

/**
 * Loads the optional addon native/<name> (built by scripts/build-native.mjs). A missing build,
 * or a library missing at run time (built elsewhere, library removed), leaves the reason instead.
 */
export function loadAddon<T>(name: string, what: string): LoadedAddon<T> {
  const file = join(projectRoot(), 'native', name, 'build', 'Release', `${name}.node`);
  if (!existsSync(file)) return { reason: `the ${what} is not built` };
  try {
    return { addon: createRequire(import.meta.url)(file) as T };
  } catch (error) {
    const detail = error instanceof Error ? (error.message.split('\n')[0] ?? '') : String(error);
    return { reason: `the ${what} does not load (${detail})` };
  }
}
