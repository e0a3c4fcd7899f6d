import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { SETTINGS, settingsTable } from '../../src/config/settings.js';
import { ConfigError } from '../../src/errors.js';
import { projectRoot } from '../../src/paths.js';

describe('the settings table', () => {
  it('is exactly the table in README.md, so the documentation cannot drift from the code', () => {
    const readme = readFileSync(join(projectRoot(), 'README.md'), 'utf8');
    expect(readme).toContain(`${settingsTable()}\n\n`);
    expect(readme.match(/^\| variable \| default \| meaning \|$/gm)).toHaveLength(1);
  });

  it('names each variable once', () => {
    const names = SETTINGS.map((setting) => setting.name);
    expect(new Set(names).size).toBe(names.length);
  });

  it('validates every integer setting against its own range, at both ends', () => {
    for (const setting of SETTINGS) {
      if (setting.type !== 'integer') continue;
      const env = setting.s3 ? { IIIF_SOURCE: 's3', IIIF_S3_BUCKET: 'images' } : {};
      const problemsFor = (value: string) => {
        try {
          loadConfig({ ...env, [setting.name]: value });
          return [];
        } catch (error) {
          if (error instanceof ConfigError) return error.problems.filter((problem) => problem.startsWith(`${setting.name} `));
          throw error;
        }
      };
      expect(problemsFor(String(setting.max + 1)), setting.name).toEqual([`${setting.name} must be a whole number from ${setting.min} to ${setting.max}, got "${setting.max + 1}"`]);
      if (setting.min > 0) expect(problemsFor(String(setting.min - 1)), setting.name).toHaveLength(1);
    }
  });
});
