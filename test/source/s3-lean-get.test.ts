import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { Metrics } from '../../src/metrics.js';
import { classify } from '../../src/source/s3-failures.js';
import { LeanGet, S3ErrorAnswer } from '../../src/source/s3-lean-get.js';
import { S3Requests } from '../../src/source/s3-requests.js';
import { BUCKET, S3Store } from './s3-store.js';

let store: S3Store;
const body = randomBytes(200_000);
// Characters the SDK escapes in a path, and ones it does not: the signature must cover the same path s3rver sees.
const ODD_KEY = "deep/a b+c!'()*~ é.tif";
beforeAll(async () => {
  store = await S3Store.start();
  await store.put('plain.tif', body);
  await store.put(ODD_KEY, body);
}, 60_000);
afterAll(() => store.close());

function leanGet(secretAccessKey = 'S3RVER'): LeanGet {
  const config = loadConfig({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: BUCKET, IIIF_S3_ENDPOINT: store.endpoint, IIIF_S3_REGION: 'us-east-1', IIIF_CACHE_DIR: '/nonexistent' }).s3!;
  const client = new S3Client({ region: 'us-east-1', endpoint: config.endpoint, forcePathStyle: config.forcePathStyle, credentials: { accessKeyId: 'S3RVER', secretAccessKey } });
  return LeanGet.for(config, client);
}

async function bodyOf(answer: { Body?: AsyncIterable<unknown> } | undefined): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of answer!.Body!) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const etagOf = async (key: string) => (await leanGet().get(BUCKET, key, 'bytes=0-0', '*', AbortSignal.timeout(5000)))!.ETag!;

describe('lean ranged GET', () => {
  it('sends a signed GET with Range and If-Match, and answers exactly those bytes of that version', async () => {
    const etag = await etagOf('plain.tif');
    const seen = store.requests.length;
    const answer = await leanGet().get(BUCKET, 'plain.tif', 'bytes=65536-131071', etag, AbortSignal.timeout(5000));
    expect(answer!.ETag).toBe(etag);
    expect(answer!.ContentRange).toBe(`bytes 65536-131071/${body.length}`);
    expect(answer!.ContentLength).toBe(65536);
    expect((await bodyOf(answer)).equals(body.subarray(65536, 131072))).toBe(true);
    expect(store.requests.slice(seen)).toMatchObject([{ method: 'GET', key: 'plain.tif', range: 'bytes=65536-131071', ifMatch: etag }]);
  });

  it('signs keys with characters the path must escape', async () => {
    const answer = await leanGet().get(BUCKET, ODD_KEY, 'bytes=10-19', await etagOf(ODD_KEY), AbortSignal.timeout(5000));
    expect((await bodyOf(answer)).equals(body.subarray(10, 20))).toBe(true);
  });

  it('signs with SigV4 as S3 verifies it (s3rver does not: checked here against our own derivation)', async () => {
    const seen: IncomingMessage[] = [];
    const server = createServer((req, res) => {
      seen.push(req);
      res.writeHead(206, { etag: '"e"', 'content-range': 'bytes 0-1/2', 'content-length': '2' }).end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const config = loadConfig({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: BUCKET, IIIF_S3_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, IIIF_S3_REGION: 'eu-west-3', IIIF_CACHE_DIR: '/nonexistent' }).s3!;
      const client = new S3Client({ region: 'eu-west-3', endpoint: config.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'AKID', secretAccessKey: 'SECRET', sessionToken: 'TOKEN' } });
      await bodyOf(await LeanGet.for(config, client).get(BUCKET, ODD_KEY, 'bytes=0-1', '"e"', AbortSignal.timeout(5000)));
    } finally {
      server.close();
    }
    const { method, url, headers } = seen[0]!;
    const auth = /^AWS4-HMAC-SHA256 Credential=AKID\/(\d{8})\/eu-west-3\/s3\/aws4_request, SignedHeaders=([a-z0-9;-]+), Signature=([0-9a-f]{64})$/.exec(headers.authorization ?? '');
    expect(auth).not.toBeNull();
    const [, day, signedHeaders, signature] = auth!;
    expect(signedHeaders!.split(';')).toEqual(expect.arrayContaining(['host', 'if-match', 'range', 'x-amz-content-sha256', 'x-amz-date', 'x-amz-security-token']));
    expect(headers['x-amz-security-token']).toBe('TOKEN');
    const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');
    expect(headers['x-amz-content-sha256']).toBe(sha256(''));
    const canonical = [method, url, '', ...signedHeaders!.split(';').map((name) => `${name}:${String(headers[name]).trim()}`), '', signedHeaders, headers['x-amz-content-sha256']].join('\n');
    const date = String(headers['x-amz-date']);
    const toSign = ['AWS4-HMAC-SHA256', date, `${day}/eu-west-3/s3/aws4_request`, sha256(canonical)].join('\n');
    const hmac = (key: string | Buffer, text: string) => createHmac('sha256', key).update(text).digest();
    const key = ['eu-west-3', 's3', 'aws4_request'].reduce((k, part) => hmac(k, part), hmac('AWS4SECRET', day!));
    expect(createHmac('sha256', key).update(toSign).digest('hex')).toBe(signature);
    expect(url).toBe(`/${BUCKET}/deep/a%20b%2Bc%21%27%28%29%2A~%20%C3%A9.tif`);
  });

  it('maps another version (412) and a missing key (404) as the SDK errors are mapped', async () => {
    const changed = await leanGet().get(BUCKET, 'plain.tif', 'bytes=0-9', '"0123456789abcdef0123456789abcdef"', AbortSignal.timeout(5000)).catch((error: unknown) => error);
    expect(changed).toBeInstanceOf(S3ErrorAnswer);
    expect((changed as S3ErrorAnswer).$metadata.httpStatusCode).toBe(412);
    expect(classify(changed)).toEqual({ result: 'changed', retryable: false });
    const missing = await leanGet().get(BUCKET, 'nothing-here.tif', 'bytes=0-9', '*', AbortSignal.timeout(5000)).catch((error: unknown) => error);
    expect(classify(missing)).toEqual({ result: 'not_found', retryable: false });
  });

  it('gives up at the deadline while S3 has not answered', async () => {
    store.fault = () => ({ delayMs: 2000 });
    try {
      const deadline = AbortSignal.timeout(200);
      await expect(leanGet().get(BUCKET, 'plain.tif', 'bytes=0-9', '*', deadline)).rejects.toThrow();
      expect(deadline.aborted).toBe(true);
    } finally {
      store.fault = undefined;
    }
  });

  it('block reads through S3Requests reuse one keep-alive connection (the body is read to its end)', async () => {
    let connections = 0;
    const block = randomBytes(65536);
    const server = createServer((_req, res) => {
      res.writeHead(206, { etag: '"e"', 'content-range': `bytes 0-65535/${body.length}`, 'content-length': '65536' }).end(block);
    });
    server.on('connection', () => connections++);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const config = loadConfig({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: BUCKET, IIIF_S3_ENDPOINT: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, IIIF_S3_REGION: 'us-east-1', IIIF_CACHE_DIR: '/nonexistent' }).s3!;
      const client = new S3Client({ region: 'us-east-1', endpoint: config.endpoint, forcePathStyle: true, credentials: { accessKeyId: 'a', secretAccessKey: 'b' } });
      const requests = new S3Requests(config, client, new Metrics(), { warn: () => undefined, info: () => undefined });
      for (let i = 0; i < 5; i++) expect((await requests.range({ key: 'k.tif' }, 'e', 0, 65536, AbortSignal.timeout(5000))).equals(block)).toBe(true);
    } finally {
      server.close();
    }
    expect(connections).toBe(1);
  });
});
