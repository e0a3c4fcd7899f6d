import { existsSync } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ARTIFACTS, deployDir, render } from '../../deploy/src/render.js';

/**
 * The committed definitions are exactly what `npm run deploy:render` makes from the committed
 * deploy/capacity.json: nobody edits them by hand, and a change to the typed source or to the
 * measurement is not complete until they are rendered again. Without a measurement there must
 * be no definitions either (they would carry numbers nobody measured).
 */
describe('committed deploy artifacts', () => {
  const capacityPath = join(deployDir(), 'capacity.json');
  const committed = Object.values(ARTIFACTS).map((relative) => join(deployDir(), relative));

  it(existsSync(capacityPath) ? 'are up to date with deploy/capacity.json and the typed source' : 'are absent while there is no measured deploy/capacity.json', async () => {
    if (!existsSync(capacityPath)) {
      expect(committed.filter((path) => existsSync(path))).toEqual([]);
      return;
    }
    const fresh = await mkdtemp(join(tmpdir(), 'iiif-render-'));
    await render(capacityPath, fresh);
    for (const relative of Object.values(ARTIFACTS)) {
      const [expected, actual] = await Promise.all([readFile(join(fresh, relative), 'utf8'), readFile(join(deployDir(), relative), 'utf8').catch(() => 'missing')]);
      expect(actual, `deploy/${relative} is stale: run npm run deploy:render`).toBe(expected);
    }
    // Rendering synthesizes a CDK app: far slower on a loaded machine, and nothing here depends on speed.
  }, 10 * 60_000);
});
