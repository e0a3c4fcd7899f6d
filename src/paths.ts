import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ServerError } from './errors.js';

/**
 * The folder holding package.json. Found by walking up because this module runs both from
 * src/ (tests) and from dist/src/ (npm start, the container), at different depths.
 */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new ServerError('PROJECT_ROOT_MISSING', 'cannot find the project root (no package.json above this module)');
    dir = parent;
  }
  return dir;
}

/** Where `npm run samples` writes the generated sample images served by default. */
export const defaultSampleFolder = (): string => join(projectRoot(), 'samples');
