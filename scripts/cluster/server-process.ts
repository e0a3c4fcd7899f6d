import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { projectRoot } from '../../src/paths.js';

/** The compiled entry point, exactly what `npm start` and the container run. */
export const MAIN = join(projectRoot(), 'dist', 'src', 'main.js');

/** A server process started from the compiled entry point, listening on 127.0.0.1. */
export interface ServerProcess {
  child: ChildProcess;
  port: number;
  /** Every JSON log line it has written so far. */
  logs: Array<Record<string, unknown>>;
  /** Resolves with the exit code (or the signal's name) when the process ends. */
  exited: Promise<number | string>;
}

/**
 * Starts the server with `PORT=0` on 127.0.0.1 plus `env`, and resolves once it has logged the
 * port it listens on (an info-level line). Rejects if it exits first or does not listen within `startMs`.
 */
export async function startServerProcess(env: Record<string, string>, startMs = 20_000): Promise<ServerProcess> {
  if (['fatal', 'error', 'warn', 'silent'].includes(env.LOG_LEVEL ?? 'info')) {
    throw new Error(`LOG_LEVEL=${env.LOG_LEVEL} hides the line that says which port the server took`);
  }
  const child = spawn(process.execPath, [MAIN], {
    env: { PATH: process.env.PATH, PORT: '0', HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const exited = once(child, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  const logs: Array<Record<string, unknown>> = [];
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not listen within ${startMs} ms`));
    }, startMs);
    void exited.then((code) => reject(new Error(`server exited with ${code} before listening`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let entry: Record<string, unknown>;
      try {
        entry = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return; // not a log line (e.g. a stray print from a dependency)
      }
      logs.push(entry);
      if (typeof entry.port === 'number') {
        clearTimeout(timer);
        resolve(entry.port);
      }
    });
  });
  return { child, port, logs, exited };
}
