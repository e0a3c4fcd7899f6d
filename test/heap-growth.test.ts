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

/** Loaded before the entry point: a full collection on SIGUSR2, so the test decides when one runs. */
const COLLECT_ON_SIGNAL = `data:text/javascript,process.on('SIGUSR2', () => globalThis.gc())`;

/**
 * Starts an entry point with V8's own report of each full collection (--trace-gc-verbose), has
 * it collect once it listens, and returns the growth factor V8 applied to the old generation's
 * limit after that collection.
 */
async function factorOnceListening(args: string[]): Promise<string> {
  const child = spawn(process.execPath, ['--expose-gc', `--import=${COLLECT_ON_SIGNAL}`, '--trace-gc-verbose', ...args], {
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', IIIF_FILE_ROOT: root },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let collected = false;
    for await (const line of createInterface({ input: child.stdout })) {
      if (!collected && line.startsWith('{') && line.includes('"port"')) {
        collected = child.kill('SIGUSR2');
        continue;
      }
      const limit = collected && /\[HeapController\] Limit: .* \((\d+\.\d)\)$/.exec(line);
      if (limit) return limit[1]!;
    }
    throw new Error('the server ended before reporting a full collection');
  } finally {
    child.kill('SIGKILL');
  }
}

describe('old-generation growth', () => {
  it.each([
    ['npm start', [MAIN]],
    ['iiif-elastic serve', [join(projectRoot(), 'dist', 'src', 'cli.js'), 'serve']],
  ])('%s sets the growth factor V8 applies after a full collection', async (_name, args) => {
    // Left to itself V8 picks 1.1–1.3 once collecting looks cheap (4.0 before it knows).
    expect(await factorOnceListening(args)).toBe((1 + HEAP_GROWING_PERCENT / 100).toFixed(1));
  });
});
