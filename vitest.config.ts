import { defineConfig } from 'vitest/config';

/**
 * Two tiers. unit: pure code and in-process HTTP, nothing from the machine beyond Node and npm
 * packages (`npm run test:unit`, the fast loop). system: tests that need parts installed on the
 * machine — a Docker engine, HAProxy, Chromium, the AWS CLI, Debian's image tools — named
 * `*.system.test.ts` (`npm run test:system`, which installs the parts first). `npm test` runs both.
 */
const SYSTEM = 'test/**/*.system.test.ts';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // The JSON report lets .ci/run print a plain "N passed, N failed" closing line.
    reporters: ['default', 'json'],
    outputFile: { json: 'test-output/vitest.json' },
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/**/*.test.ts'], exclude: [SYSTEM] } },
      { extends: true, test: { name: 'system', include: [SYSTEM] } },
    ],
  },
});
