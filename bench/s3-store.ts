/**
 * A real S3 wire-protocol server on loopback, for the tests and the capacity run: s3rver on
 * 127.0.0.1, behind a small HTTP proxy of our own that counts the requests the server under
 * test makes, can inject faults (delays, error statuses, truncated bodies, a stopped store),
 * can throttle object downloads to what S3 itself delivers (a first-byte latency and a
 * per-connection bandwidth), and can serve one stored object under many keys (so a capacity
 * run has as many never-seen images as it needs). The server under test talks to the proxy
 * exactly as it would to S3; fixtures are uploaded straight to s3rver. Its credentials are
 * S3RVER / S3RVER. It can also stall an upload half-way, and s3rver ignores conditional writes;
 * with `conditionalWrites` the proxy honours them as AWS S3 does. s3rver ignores `If-Match` on
 * reads too: the proxy answers a GET pinned to an ETag the object no longer has with 412, as
 * S3 does. It counts what it forwards (GETs, ranged GETs, body bytes: see traffic()).
 */
import { request as httpRequest, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { once } from 'node:events';
import { Transform } from 'node:stream';
import { DeleteObjectCommand, HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';

export const BUCKET = 'images';

export interface Fault {
  /** Answer with this status and S3 error code instead of forwarding. */
  status?: number;
  code?: string;
  /** Wait this long before forwarding. */
  delayMs?: number;
  /** Forward the headers (Content-Length included) but only half the body, then cut the connection. */
  truncate?: boolean;
  /** Forward only this many bytes of the request body, then hold the request (an upload that stops half-way). */
  stallBodyAfterBytes?: number;
}

export interface SeenRequest {
  method: string;
  /** Object key, or '' for bucket-level requests. */
  key: string;
  ifNoneMatch: string | undefined;
  ifMatch: string | undefined;
  range: string | undefined;
  /** When it arrived (performance.now()). */
  at: number;
}

/** What the proxy has forwarded so far. */
export interface Traffic {
  requests: number;
  /** GETs of objects, ranged ones included. */
  gets: number;
  rangeGets: number;
  /** Response body bytes sent to clients. */
  bytes: number;
}

/** How S3 delivers an object: time to the first byte, then at most this many bytes per second per connection. */
export interface Link {
  firstByteMs: number;
  bytesPerSecond: number;
}

/** Lets an object's bytes through no faster than `bytesPerSecond`, counted from the first byte. */
function throttled(bytesPerSecond: number): Transform {
  const start = performance.now();
  let sent = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      sent += chunk.length;
      const wait = start + (sent / bytesPerSecond) * 1000 - performance.now();
      if (wait > 1) setTimeout(() => done(null, chunk), wait);
      else done(null, chunk);
    },
  });
}

export class S3Store {
  /** Every request the proxy received, in order. */
  readonly requests: SeenRequest[] = [];
  /** Decides a fault per request; undefined forwards everything untouched. */
  fault: ((request: SeenRequest) => Fault | undefined) | undefined;
  /** Throttles every object GET like S3 over the network; undefined delivers at loopback speed. */
  link: Link | undefined;
  /** The stored key a requested key is served from (the ETag is the stored object's); undefined serves keys as they are. */
  alias: ((key: string) => string) | undefined;
  /**
   * Honour `If-None-Match: *` and `If-Match` on PUT (412 when the key exists, or does not hold
   * that ETag), as AWS S3 does: writes to one key are then handled one at a time, each
   * condition checked against what s3rver holds.
   */
  conditionalWrites = false;
  private bytesSent = 0;
  private readonly proxy: Server;
  private readonly keyLocks = new Map<string, Promise<void>>();
  private proxyPort = 0;

  private constructor(
    private readonly s3rver: S3rver,
    private readonly s3rverPort: number,
    readonly uploader: S3Client,
    /** Where s3rver keeps the objects; deleted on close. */
    readonly directory: string,
  ) {
    this.proxy = createServer((req, res) => this.handle(req, res));
    // Node closes idle keep-alive connections after 5 s on both ends, and a request sent on one
    // just as the other end closes it fails with "socket hang up": the clients under test keep
    // theirs (as S3 lets them), and the proxy opens a fresh connection to s3rver per request.
    this.proxy.keepAliveTimeout = 10 * 60_000;
  }

  static async start(): Promise<S3Store> {
    const directory = await mkdtemp(join(tmpdir(), 's3rver-'));
    const s3rver = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true, configureBuckets: [{ name: BUCKET }] });
    const { port } = (await s3rver.run()) as AddressInfo;
    const uploader = new S3Client({
      endpoint: `http://127.0.0.1:${port}`,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' },
      // s3rver stores aws-chunked uploads with their framing inside the object.
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    const store = new S3Store(s3rver, port, uploader, directory);
    await store.startProxy();
    return store;
  }

  /** What the server under test uses as IIIF_S3_ENDPOINT. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.proxyPort}`;
  }

  /** GETs of one object (or of all objects) the proxy has seen. */
  gets(key?: string): number {
    return this.requests.filter((r) => r.method === 'GET' && r.key !== '' && (key === undefined || r.key === key)).length;
  }

  /** Requests, GETs, ranged GETs and body bytes forwarded so far. */
  traffic(): Traffic {
    const gets = this.requests.filter((r) => r.method === 'GET' && r.key !== '');
    return { requests: this.requests.length, gets: gets.length, rangeGets: gets.filter((r) => r.range !== undefined).length, bytes: this.bytesSent };
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.uploader.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  }

  async remove(key: string): Promise<void> {
    await this.uploader.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  }

  /** Closes the endpoint: new connections are refused, as with a stopped store. */
  async stopProxy(): Promise<void> {
    this.proxy.closeAllConnections();
    await new Promise<void>((resolve) => this.proxy.close(() => resolve()));
  }

  /** Listens again, on the same port once it has been chosen. */
  async startProxy(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.proxy.once('error', reject);
      this.proxy.listen(this.proxyPort, '127.0.0.1', () => {
        this.proxy.off('error', reject);
        resolve();
      });
    });
    this.proxyPort = (this.proxy.address() as AddressInfo).port;
  }

  /** Stops both servers and deletes the objects (a fleet benchmark leaves gigabytes). */
  async close(): Promise<void> {
    this.uploader.destroy();
    if (this.proxy.listening) await this.stopProxy();
    await this.s3rver.close();
    await rm(this.directory, { recursive: true, force: true });
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const key = path.split('/').slice(2).join('/');
    const header = (name: string) => {
      const value = req.headers[name];
      return typeof value === 'string' ? value : undefined;
    };
    const seen: SeenRequest = {
      method: req.method ?? '',
      key,
      ifNoneMatch: header('if-none-match'),
      ifMatch: header('if-match'),
      range: header('range'),
      at: performance.now(),
    };
    this.requests.push(seen);
    const fault = this.fault?.(seen);
    const stored = key !== '' && this.alias ? this.alias(key) : key;
    const upstreamPath = stored === key ? req.url : `/${BUCKET}/${stored.split('/').map(encodeURIComponent).join('/')}${new URL(req.url ?? '/', 'http://x').search}`;
    const link = key !== '' && req.method === 'GET' ? this.link : undefined;
    const forward = () => {
      if (res.destroyed) return;
      if (fault?.status) {
        respondError(res, fault.status, fault.code ?? 'InternalError');
        return;
      }
      const upstream = httpRequest(
        { host: '127.0.0.1', port: this.s3rverPort, method: req.method, path: upstreamPath, headers: req.headers, agent: false },
        (answer) => {
          // A read pinned to a version the object no longer has: S3 refuses it.
          if (req.method === 'GET' && seen.ifMatch && seen.ifMatch !== '*' && (answer.statusCode ?? 500) < 300 && answer.headers.etag !== seen.ifMatch) {
            answer.destroy();
            respondError(res, 412, 'PreconditionFailed');
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          if (!fault?.truncate) {
            (link ? answer.pipe(throttled(link.bytesPerSecond)) : answer).pipe(this.counted()).pipe(res);
            return;
          }
          const chunks: Buffer[] = [];
          answer.on('data', (chunk: Buffer) => chunks.push(chunk));
          answer.on('end', () => {
            const body = Buffer.concat(chunks);
            const half = body.subarray(0, Math.floor(body.length / 2));
            this.bytesSent += half.length;
            res.write(half, () => res.destroy());
          });
        },
      );
      upstream.on('error', () => res.destroy());
      // A client that goes away mid-request (killed) aborts the request to s3rver too, as S3 sees it.
      res.on('close', () => {
        if (!res.writableFinished) upstream.destroy();
      });
      if (fault?.stallBodyAfterBytes === undefined) {
        req.pipe(upstream);
        return;
      }
      let sent = 0;
      req.on('data', (chunk: Buffer) => {
        const room = fault.stallBodyAfterBytes! - sent;
        if (room > 0) upstream.write(chunk.subarray(0, room));
        sent += chunk.length;
      });
    };
    const delayMs = (fault?.delayMs ?? 0) + (link?.firstByteMs ?? 0);
    const start = () => {
      if (delayMs > 0) {
        const timer = setTimeout(forward, delayMs);
        res.on('close', () => clearTimeout(timer));
      } else {
        forward();
      }
    };
    const finished = async () => {
      if (!res.writableFinished && !res.destroyed) await once(res, 'close');
    };
    // s3rver removes emptied folders after a delete without any locking, so two deletes at once
    // can fail with a 500 (S3 has no folders): deletes reach it one at a time.
    const forwardAll = async () => {
      start();
      await finished();
    };
    const send = () => (req.method === 'DELETE' ? this.oneAtATime(ALL_DELETES, forwardAll) : forwardAll());
    if (this.conditionalWrites && (req.method === 'PUT' || req.method === 'DELETE') && key !== '') {
      void this.oneAtATime(key, async () => {
        if (req.method === 'PUT' && !(await this.conditionHolds(req, key))) {
          respondError(res, 412, 'PreconditionFailed');
          await finished();
        } else {
          await send();
        }
      });
    } else {
      void send();
    }
  }

  /** Counts the body bytes passing through. */
  private counted(): Transform {
    return new Transform({
      transform: (chunk: Buffer, _encoding, done) => {
        this.bytesSent += chunk.length;
        done(null, chunk);
      },
    });
  }

  /** Runs writes to one key one after the other, so a condition checked still holds when the write lands. */
  private async oneAtATime(key: string, work: () => Promise<void>): Promise<void> {
    const previous = this.keyLocks.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((resolve) => (release = resolve));
    const turn = previous.then(() => mine);
    this.keyLocks.set(key, turn);
    await previous;
    try {
      await work();
    } finally {
      release();
      if (this.keyLocks.get(key) === turn) this.keyLocks.delete(key);
    }
  }

  private async conditionHolds(req: IncomingMessage, key: string): Promise<boolean> {
    const noneMatch = req.headers['if-none-match'];
    const match = req.headers['if-match'];
    if (noneMatch === undefined && match === undefined) return true;
    const current = await this.uploader.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key })).then(
      (head) => head.ETag,
      () => undefined,
    );
    if (noneMatch === '*' && current !== undefined) return false;
    if (typeof match === 'string' && match !== current) return false;
    return true;
  }
}

/** The lock every DELETE takes (no object key is empty). */
const ALL_DELETES = '';

function respondError(res: ServerResponse, status: number, code: string): void {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>injected ${code}</Message></Error>`);
}
