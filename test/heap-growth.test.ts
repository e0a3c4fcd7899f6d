import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { MAIN } from '../scripts/cluster/server-process.js';
import { HEAP_GROWING_PERCENT } from '../src/heap-growth.js';
import { projectRoot } from '../src/paths.js';
import { makeFixtures } from './fixtures.js';

let root: string;
beforeAll(async () => {
  ({ root } = await makeFixtures());
});

/**
 * Starts an entry point with V8's own report of each full collection (--trace-gc-verbose) and
 * returns the growth factors V8 applied to the old generation's limit until the server listened.
 * Loading the server's modules takes at least one full collection after the entry has run.
 */
async function growthFactors(args: string[]): Promise<string[]> {
  const child = spawn(process.execPath, ['--trace-gc-verbose', ...args], {
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', IIIF_FILE_ROOT: root },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const factors: string[] = [];
  try {
    for await (const line of createInterface({ input: child.stdout })) {
      const limit = /\[HeapController\] Limit: .* \((\d+\.\d)\)$/.exec(line);
      if (limit) factors.push(limit[1]!);
      if (line.startsWith('{') && line.includes('"port"')) break;
    }
  } finally {
    child.kill('SIGKILL');
  }
  return factors;
}

describe('old-generation growth', () => {
  it.each([
    ['npm start', [MAIN]],
    ['iiif-elastic serve', [join(projectRoot(), 'dist', 'src', 'cli.js'), 'serve']],
  ])('%s sets the growth factor V8 applies after full collections', async (_name, args) => {
    const factors = await growthFactors(args);
    // Left to itself V8 picked 4.0 for the first collection and 1.1–1.3 once collecting looked cheap.
    expect(factors.length).toBeGreaterThan(0);
    expect(factors.at(-1)).toBe((1 + HEAP_GROWING_PERCENT / 100).toFixed(1));
  });
});
