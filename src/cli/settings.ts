import { loadConfig } from '../config.js';
import type { Options } from './command.js';

/**
 * The environment variables src/config.ts reads, found by letting it read an environment that
 * records every name asked for (and says IIIF_SOURCE=s3, so the S3 settings are read too). So
 * each new setting gets its flag without a second list to keep in step, and every value is
 * still validated in exactly one place.
 */
function settingVariables(): string[] {
  const seen: string[] = [];
  const recorder = new Proxy<Record<string, string | undefined>>(
    {},
    {
      get(_target, name) {
        if (typeof name === 'string' && !seen.includes(name)) seen.push(name);
        return name === 'IIIF_SOURCE' ? 's3' : undefined;
      },
    },
  );
  try {
    loadConfig(recorder);
  } catch {
    // Defaults that fail validation do not matter here: only the names read do.
  }
  return seen;
}

/** IIIF_FILE_ROOT → file-root, PORT → port, LOG_LEVEL → log-level. */
const flagFor = (variable: string): string => variable.replace(/^IIIF_/, '').toLowerCase().replaceAll('_', '-');

const SETTINGS = settingVariables().map((variable) => ({ variable, flag: flagFor(variable) }));

/** A `--flag <value>` for every setting. */
export const settingOptions: Options = Object.fromEntries(SETTINGS.map(({ flag }) => [flag, { type: 'string' }]));

/** The process environment with the given setting flags laid over it: flags win. */
export function environmentWith(values: Record<string, unknown>): Record<string, string | undefined> {
  const env: Record<string, string | undefined> = { ...process.env };
  for (const { variable, flag } of SETTINGS) {
    const value = values[flag];
    if (typeof value === 'string') env[variable] = value;
  }
  return env;
}

export function settingsHelp(): string {
  const width = Math.max(...SETTINGS.map(({ flag }) => flag.length)) + 12;
  const lines = SETTINGS.map(({ variable, flag }) => `  ${`--${flag} <value>`.padEnd(width)}sets ${variable}`);
  return `Settings (each overrides its environment variable; meanings and defaults in README.md, "Configuration"):\n${lines.join('\n')}`;
}
