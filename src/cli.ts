#!/usr/bin/env node
/**
 * `iiif-elastic <command>`: the command-line face of the server. Each command lives in its own
 * module under src/cli/ and is listed in COMMANDS; this file only dispatches, answers --help,
 * and turns any failure into exit code 1 (2 for bad usage) with one line on stderr.
 */
import { parseArgs } from 'node:util';
import { UsageError, type Command } from './cli/command.js';
import { derivativesCommand } from './cli/derivatives.js';
import { infoCommand } from './cli/info.js';
import { pyramidCommand } from './cli/pyramid.js';
import { serveCommand } from './cli/serve.js';

const COMMANDS: Record<string, Command> = {
  serve: serveCommand,
  info: infoCommand,
  pyramid: pyramidCommand,
  derivatives: derivativesCommand,
};

const NAME = 'iiif-elastic';

function topHelp(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((name) => name.length)) + 3;
  const lines = Object.entries(COMMANDS).map(([name, command]) => `  ${name.padEnd(width)}${command.summary}`);
  return `Usage: ${NAME} <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun "${NAME} <command> --help" for a command's options.\n`;
}

function commandHelp(name: string, command: Command): string {
  return `Usage: ${NAME} ${name} ${command.usage}\n\n${command.summary[0]!.toUpperCase()}${command.summary.slice(1)}.\n\n${command.help}\n`;
}

async function run(argv: string[]): Promise<void> {
  const [name, ...rest] = argv;
  if (name === undefined) throw new UsageError(`no command given; run "${NAME} --help" for the list`);
  if (name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(topHelp());
    return;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) throw new UsageError(`unknown command "${name.slice(0, 50)}"; run "${NAME} --help" for the list`);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(commandHelp(name, command));
    return;
  }
  if (command.passThrough) {
    await command.run({ values: {}, positionals: rest });
    return;
  }
  let parsed;
  try {
    parsed = parseArgs({ args: rest, options: command.options, allowPositionals: true, strict: true });
  } catch (error) {
    // Node's messages are long and suggest "--"; the first sentence is what the user needs.
    const message = error instanceof Error ? error.message.split('. ')[0]! : String(error);
    throw new UsageError(`${name}: ${message}; run "${NAME} ${name} --help"`);
  }
  if (!command.variadic && parsed.positionals.length !== command.positionals.length) {
    const expected = command.positionals.map((p) => `<${p}>`).join(' ') || 'no arguments';
    throw new UsageError(`${name} takes ${expected}, got ${parsed.positionals.length} argument(s); run "${NAME} ${name} --help"`);
  }
  await command.run(parsed);
}

run(process.argv.slice(2)).catch((error: unknown) => {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`${NAME}: ${message.split('\n')[0]}\n`);
  process.exit(error instanceof UsageError ? 2 : 1);
});
