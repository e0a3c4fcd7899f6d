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
 * Loaded before the entry point: on SIGUSR2, one full collection, then exit (which flushes what
 * V8 printed), so the test decides when the last collection runs.
 */
const COLLECT_ON_SIGNAL = `data:text/javascript,process.on('SIGUSR2', () => { globalThis.gc(); process.exit(0); })`;

/**
 * Starts an entry point with V8's own report of each full collection (--trace-gc-verbose), has
 * it collect and exit once it listens, and returns the growth factor V8 applied to the old
 * generation's limit after that last collection.
 */
async function factorOnceListening(args: string[]): Promise<string | undefined> {
  const child = spawn(process.execPath, ['--expose-gc', `--import=${COLLECT_ON_SIGNAL}`, '--trace-gc-verbose', ...args], {
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', IIIF_FILE_ROOT: root },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    let signalled = false;
    let last: string | undefined;
    for await (const line of createInterface({ input: child.stdout })) {
      if (!signalled && line.startsWith('{') && line.includes('"port"')) signalled = child.kill('SIGUSR2');
      last = /\[HeapController\] Limit: .* \((\d+\.\d)\)$/.exec(line)?.[1] ?? last;
    }
    return signalled ? last : undefined;
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
