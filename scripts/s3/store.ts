/**
 * A real S3 wire-protocol server for tests and benchmarks: s3rver on 127.0.0.1, behind the
 * counting, throttling, fault-injecting proxy (proxy.ts). The server under test talks to the
 * proxy exactly as it would to S3; fixtures are uploaded straight to s3rver.
 */
import { mkdtemp } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { S3Proxy, type Throttle } from './proxy.js';

export const BUCKET = 'images';
/** What s3rver accepts; the server under test finds them through the standard AWS chain. */
export const CREDENTIALS = { AWS_ACCESS_KEY_ID: 'S3RVER', AWS_SECRET_ACCESS_KEY: 'S3RVER' };

export class S3Store {
  private constructor(
    private readonly s3rver: S3rver,
    readonly proxy: S3Proxy,
    readonly uploader: S3Client,
  ) {}

  static async start(options: { throttle?: Throttle } = {}): Promise<S3Store> {
    const directory = await mkdtemp(join(tmpdir(), 's3rver-'));
    const s3rver = new S3rver({ address: '127.0.0.1', port: 0, directory, silent: true, configureBuckets: [{ name: BUCKET }] });
    const { port } = (await s3rver.run()) as AddressInfo;
    const uploader = new S3Client({
      endpoint: `http://127.0.0.1:${port}`,
      forcePathStyle: true,
      region: 'us-east-1',
      credentials: { accessKeyId: CREDENTIALS.AWS_ACCESS_KEY_ID, secretAccessKey: CREDENTIALS.AWS_SECRET_ACCESS_KEY },
      // s3rver stores aws-chunked uploads with their framing inside the object.
      requestChecksumCalculation: 'WHEN_REQUIRED',
    });
    const proxy = new S3Proxy(port, options.throttle);
    await proxy.start();
    return new S3Store(s3rver, proxy, uploader);
  }

  /** What the server under test uses as IIIF_S3_ENDPOINT. */
  get endpoint(): string {
    return this.proxy.endpoint;
  }

  get requests() {
    return this.proxy.requests;
  }

  get fault() {
    return this.proxy.fault;
  }

  set fault(fault: S3Proxy['fault']) {
    this.proxy.fault = fault;
  }

  /** GETs of one object (or of all objects) the proxy has seen. */
  gets(key?: string): number {
    return this.requests.filter((r) => r.method === 'GET' && r.key !== '' && (key === undefined || r.key === key)).length;
  }

  async put(key: string, body: Buffer): Promise<void> {
    await this.uploader.send(new PutObjectCommand({ Bucket: BUCKET, Key: key, Body: body }));
  }

  async remove(key: string): Promise<void> {
    await this.uploader.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
  }

  /** Closes the endpoint: new connections are refused, as with a stopped store. */
  stopProxy(): Promise<void> {
    return this.proxy.stop();
  }

  /** Listens again, on the same port. */
  startProxy(): Promise<void> {
    return this.proxy.start();
  }

  async close(): Promise<void> {
    this.uploader.destroy();
    if (this.proxy.listening) await this.proxy.stop();
    await this.s3rver.close();
  }
}
