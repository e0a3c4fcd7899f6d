/**
 * An HTTP proxy in front of an S3-compatible store (s3rver), for tests and benchmarks. It
 * counts what the server under test asks for (requests, GETs, ranged GETs, body bytes), can
 * make the store behave like S3 seen from EC2 (time to first byte, bandwidth per connection),
 * injects faults (error statuses, delays, truncated bodies, a stopped store), and answers
 * If-Match as S3 does — s3rver ignores it — so a read pinned to a version that has since been
 * replaced gets 412.
 */
import { request as httpRequest, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Transform, type TransformCallback } from 'node:stream';

export interface Fault {
  /** Answer with this status and S3 error code instead of forwarding. */
  status?: number;
  code?: string;
  /** Wait this long before forwarding. */
  delayMs?: number;
  /** Forward the headers (Content-Length included) but only half the body, then cut the connection. */
  truncate?: boolean;
}

export interface SeenRequest {
  method: string;
  /** Object key, or '' for bucket-level requests. */
  key: string;
  range: string | undefined;
  ifMatch: string | undefined;
  ifNoneMatch: string | undefined;
  /** When it arrived (performance.now()). */
  at: number;
}

/** How S3 looks from an EC2 instance: a wait before the first byte, then a bounded rate per connection. */
export interface Throttle {
  latencyMs: number;
  bytesPerSecond: number;
}

/** What the proxy has forwarded so far. */
export interface Traffic {
  requests: number;
  gets: number;
  rangeGets: number;
  /** Response body bytes sent to the client. */
  bytes: number;
}

const header = (req: IncomingMessage, name: string): string | undefined => {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
};

export class S3Proxy {
  /** Every request received, in order. */
  readonly requests: SeenRequest[] = [];
  /** Decides a fault per request; undefined forwards everything untouched. */
  fault: ((request: SeenRequest) => Fault | undefined) | undefined;
  throttle: Throttle | undefined;
  private bytes = 0;
  private readonly server: Server;
  private port = 0;

  constructor(
    private readonly upstreamPort: number,
    throttle?: Throttle,
  ) {
    this.throttle = throttle;
    this.server = createServer((req, res) => this.handle(req, res));
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  traffic(): Traffic {
    const gets = this.requests.filter((r) => r.method === 'GET' && r.key !== '');
    return { requests: this.requests.length, gets: gets.length, rangeGets: gets.filter((r) => r.range).length, bytes: this.bytes };
  }

  /** Listens (again: on the same port once one was chosen). */
  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.port, '127.0.0.1', () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
  }

  /** Closes the endpoint: new connections are refused, as with a stopped store. */
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  get listening(): boolean {
    return this.server.listening;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const seen: SeenRequest = {
      method: req.method ?? '',
      key: path.split('/').slice(2).join('/'),
      range: header(req, 'range'),
      ifMatch: header(req, 'if-match'),
      ifNoneMatch: header(req, 'if-none-match'),
      at: performance.now(),
    };
    this.requests.push(seen);
    const fault = this.fault?.(seen);
    const forward = () => {
      if (res.destroyed) return;
      if (fault?.status) return this.error(res, fault.status, fault.code ?? 'InternalError');
      const upstream = httpRequest({ host: '127.0.0.1', port: this.upstreamPort, method: req.method, path: req.url, headers: req.headers }, (answer) =>
        this.answer(seen, answer, res, fault),
      );
      upstream.on('error', () => res.destroy());
      req.pipe(upstream);
    };
    const wait = (fault?.delayMs ?? 0) + (this.throttle?.latencyMs ?? 0);
    if (wait > 0) {
      const timer = setTimeout(forward, wait);
      res.on('close', () => clearTimeout(timer));
    } else {
      forward();
    }
  }

  private answer(seen: SeenRequest, answer: IncomingMessage, res: ServerResponse, fault: Fault | undefined): void {
    const etag = answer.headers.etag;
    // S3 refuses a read pinned to another version; s3rver would serve whatever it holds now.
    if (seen.ifMatch && (answer.statusCode ?? 500) < 300 && seen.ifMatch !== etag && seen.ifMatch !== '*') {
      answer.destroy();
      return this.error(res, 412, 'PreconditionFailed');
    }
    res.writeHead(answer.statusCode ?? 502, answer.headers);
    const counted = new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.bytes += chunk.length;
        done(null, chunk);
      },
    });
    const paced = this.throttle ? answer.pipe(new Pace(this.throttle.bytesPerSecond)) : answer;
    if (!fault?.truncate) {
      paced.pipe(counted).pipe(res);
      return;
    }
    const chunks: Buffer[] = [];
    paced.on('data', (chunk: Buffer) => chunks.push(chunk));
    paced.on('end', () => {
      const body = Buffer.concat(chunks);
      const half = body.subarray(0, Math.floor(body.length / 2));
      this.bytes += half.length;
      res.write(half, () => res.destroy());
    });
  }

  private error(res: ServerResponse, status: number, code: string): void {
    res.writeHead(status, { 'content-type': 'application/xml' });
    res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected ${code}</Message></Error>`);
  }
}

/** Lets bytes through no faster than `bytesPerSecond` (from the first byte on). */
class Pace extends Transform {
  private started = 0;
  private sent = 0;

  constructor(private readonly bytesPerSecond: number) {
    super();
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, done: TransformCallback): void {
    if (this.started === 0) this.started = performance.now();
    this.sent += chunk.length;
    const due = this.started + (this.sent / this.bytesPerSecond) * 1000;
    const wait = due - performance.now();
    if (wait <= 0) done(null, chunk);
    else setTimeout(() => done(null, chunk), wait);
  }
}
