import { SETTINGS as TABLE } from '../config/settings.js';
import type { Options } from './command.js';

/** IIIF_FILE_ROOT → file-root, PORT → port, LOG_LEVEL → log-level. */
const flagFor = (variable: string): string => variable.replace(/^IIIF_/, '').toLowerCase().replaceAll('_', '-');

/** A flag for every setting in the table, so a new setting gets its flag without a second list. */
const SETTINGS = TABLE.map(({ name }) => ({ variable: name, flag: flagFor(name) }));

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
