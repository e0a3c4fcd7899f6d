import type { ParseArgsConfig } from 'node:util';
import { ServerError } from '../errors.js';

/** Bad command-line use (unknown command or flag, missing argument): exit code 2. */
export class UsageError extends ServerError {
  constructor(message: string) {
    super('CLI_USAGE', message);
  }
}

export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Parsed {
  values: Record<string, string | boolean | Array<string | boolean> | undefined>;
  positionals: string[];
}

/**
 * One sub-command of `iiif-elastic`. The dispatcher (src/cli.ts) parses the flags strictly from
 * `options`, checks the positional count, answers `--help` from the texts here, and turns a
 * thrown error into one line on stderr; `run` only does the work.
 */
export interface Command {
  /** One line for the top-level help. */
  summary: string;
  /** Arguments after the command name, e.g. "<identifier> [options]". */
  usage: string;
  /** Further lines for the command's own --help (flag descriptions, examples). */
  help: string;
  options: Options;
  /** Names of the positional arguments, all required. */
  positionals: string[];
  /** Takes any number of positional arguments instead (e.g. workload names). */
  variadic?: boolean;
  /** Hands every argument to `run` unparsed, as positionals (a tool with its own options). */
  passThrough?: boolean;
  run(parsed: Parsed): Promise<void>;
}
