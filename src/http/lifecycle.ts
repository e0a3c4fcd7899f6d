import type { FastifyInstance } from 'fastify';
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/**
 * Whether this process is still taking new work. `/health` reads it, so a load balancer stops
 * routing here as soon as a stop signal arrives, while requests it already sent still succeed.
 */
export class Lifecycle {
  #draining = false;

  get draining(): boolean {
    return this.#draining;
  }

  beginDrain(): void {
    this.#draining = true;
  }
}

/** While draining, every response closes its connection, so no keep-alive socket outlives the drain. */
export function registerDraining(app: FastifyInstance, lifecycle: Lifecycle): void {
  app.addHook('onSend', (_request, reply, payload, done) => {
    if (lifecycle.draining) reply.header('connection', 'close');
    done(null, payload);
  });
  closeOnlyWrittenConnections(app.server);
}

/**
 * Node's closeIdleConnections (which server.close() and Fastify's close both call) counts a
 * connection as idle once its response has been end()ed, even while most of the body still
 * waits in the socket for a slow client, and destroys it: a large tile cut off mid-body. Here
 * a connection is idle only when no response on it is still being written to the OS; a busy
 * one is closed as soon as its last response is written, so the server's close still ends.
 */
function closeOnlyWrittenConnections(server: Server): void {
  const sockets = new Set<Socket>();
  const writing = new Map<Socket, number>();
  let closing = false;
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  server.on('request', (request, response) => {
    const socket = request.socket;
    writing.set(socket, (writing.get(socket) ?? 0) + 1);
    // 'close' follows 'finish' (the last byte handed to the OS) or an aborted connection.
    response.once('close', () => {
      const left = (writing.get(socket) ?? 1) - 1;
      if (left > 0) return void writing.set(socket, left);
      writing.delete(socket);
      if (closing) socket.destroy();
    });
  });
  server.closeIdleConnections = () => {
    closing = true;
    for (const socket of sockets) if (!writing.has(socket)) socket.destroy();
  };
}

export interface DrainTimes {
  /** How long to keep accepting after the signal, so the balancer sees `/health` fail first. */
  drainDelayMs: number;
  /** Hard limit from the signal to exit; must stay under the orchestrator's stop timeout. */
  drainTimeoutMs: number;
}

const SIGNAL_EXIT_CODES = { SIGTERM: 143, SIGINT: 130 } as const;
type StopSignal = keyof typeof SIGNAL_EXIT_CODES;

/**
 * On SIGTERM or SIGINT: fail `/health` at once, keep serving for the drain delay, then stop
 * accepting, let in-flight requests finish, close idle keep-alive connections and exit 0.
 * Past the drain timeout the process exits 1 with whatever is still open. A second signal
 * exits at once (128 + signal number), for an operator who does not want to wait.
 */
export function exitGracefullyOnSignals(app: FastifyInstance, lifecycle: Lifecycle, times: DrainTimes): void {
  const onSignal = (signal: StopSignal): void => {
    if (lifecycle.draining) {
      app.log.warn({ signal }, 'second stop signal: exiting without waiting for the drain');
      process.exit(SIGNAL_EXIT_CODES[signal]);
    }
    const started = Date.now();
    lifecycle.beginDrain();
    const { drainDelayMs, drainTimeoutMs } = times;
    app.log.info({ signal, drainDelayMs, drainTimeoutMs }, 'draining: /health now answers 503');
    setTimeout(() => {
      app.log.error({ drainTimeoutMs: times.drainTimeoutMs }, 'drain timeout reached with requests still open: exiting');
      process.exit(1);
    }, times.drainTimeoutMs);
    setTimeout(() => {
      // Fastify's close stops the listener, closes idle keep-alive sockets and waits for in-flight requests.
      app.close().then(
        () => {
          app.log.info({ drainMs: Date.now() - started }, 'drained: exiting');
          process.exit(0);
        },
        (error: unknown) => {
          app.log.error({ err: error }, 'closing the server failed: exiting');
          process.exit(1);
        },
      );
    }, times.drainDelayMs);
  };
  for (const signal of Object.keys(SIGNAL_EXIT_CODES) as StopSignal[]) process.on(signal, onSignal);
}
