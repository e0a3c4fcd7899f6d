import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { S3Client } from '@aws-sdk/client-s3';
import { SignatureV4 } from '@smithy/signature-v4';
import type { S3Config } from '../config.js';

/** The parts of a GET's answer the requests read (named as the SDK's output, so both paths share the checks). */
export interface GetAnswer {
  ETag?: string;
  ContentRange?: string;
  ContentLength?: number;
  Body?: IncomingMessage;
}

/** An S3 error answer, shaped as the SDK's (name and $metadata), so classify() maps both alike. */
export class S3ErrorAnswer extends Error {
  readonly $metadata: { httpStatusCode: number };

  constructor(name: string, status: number) {
    super(`S3 answered ${status} ${name}`);
    this.name = name;
    this.$metadata = { httpStatusCode: status };
  }
}

/** Where a bucket's objects are, over the wire. */
interface Origin {
  https: boolean;
  host: string;
  port: number | undefined;
  /** Path before the key: the endpoint's own path, and the bucket in path style. */
  base: string;
}

/** The SDK's encoding of a key in a path: every segment escaped, `!'()*` too. */
const encodeKey = (key: string): string =>
  key
    .split('/')
    .map((segment) => encodeURIComponent(segment).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`))
    .join('/');

/** A bucket name usable as a host name label (virtual-hosted style); others go through the SDK. */
const DNS_BUCKET = /^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$/;

/** Error answers are short XML documents; more than this is not read. */
const MAX_ERROR_BYTES = 16 * 1024;

/**
 * A ranged, conditional GetObject without the SDK's per-request middleware stack, for the
 * block reads (the hot path of a cold server: one per uncached tile). Signed with SigV4 by the
 * SDK's own signer and the client's own credential provider (so rotated ECS or instance
 * credentials are picked up as the SDK would), sent over a keep-alive agent, with the same
 * per-attempt timeout as the client. Endpoints the SDK resolves specially (FIPS, dual-stack,
 * accelerate, dotted bucket names on AWS) are left to the SDK: `plan` answers undefined.
 */
export class LeanGet {
  private readonly agent: HttpAgent | HttpsAgent;
  private signing: Promise<{ signer: SignatureV4; region: string } | undefined> | undefined;

  private constructor(
    private readonly config: S3Config,
    private readonly client: S3Client,
    private readonly origin: (bucket: string, region: string) => Origin | undefined,
    https: boolean,
  ) {
    const options = { keepAlive: true, maxSockets: 50 };
    this.agent = https ? new HttpsAgent(options) : new HttpAgent(options);
  }

  static for(config: S3Config, client: S3Client): LeanGet {
    if (config.endpoint !== undefined) {
      const url = new URL(config.endpoint);
      const secure = url.protocol === 'https:';
      const port = url.port === '' ? undefined : Number(url.port);
      const path = url.pathname.replace(/\/$/, '');
      return new LeanGet(config, client, (bucket) => {
        if (config.forcePathStyle) return { https: secure, host: url.hostname, port, base: `${path}/${encodeKey(bucket)}` };
        return DNS_BUCKET.test(bucket) ? { https: secure, host: `${bucket}.${url.hostname}`, port, base: path } : undefined;
      }, secure);
    }
    return new LeanGet(config, client, (bucket, region) => {
      if (config.forcePathStyle) return { https: true, host: `s3.${region}.amazonaws.com`, port: undefined, base: `/${encodeKey(bucket)}` };
      return DNS_BUCKET.test(bucket) ? { https: true, host: `${bucket}.s3.${region}.amazonaws.com`, port: undefined, base: '' } : undefined;
    }, true);
  }

  /**
   * Bytes `range` of the object, only if its ETag is `ifMatch` (a 412 otherwise); undefined when
   * this bucket must go through the SDK. An error answer throws S3ErrorAnswer; a failed
   * connection, the socket's timeout or the deadline throw as node:http does.
   */
  async get(bucket: string, key: string, range: string, ifMatch: string, deadline: AbortSignal): Promise<GetAnswer | undefined> {
    const signing = await (this.signing ??= this.signerOnce());
    const origin = signing && this.origin(bucket, signing.region);
    if (!signing || !origin) return undefined;
    const hostHeader = origin.port === undefined ? origin.host : `${origin.host}:${origin.port}`;
    const signed = await signing.signer.sign({
      method: 'GET',
      protocol: origin.https ? 'https:' : 'http:',
      hostname: origin.host,
      port: origin.port,
      path: `${origin.base}/${encodeKey(key)}`,
      query: {},
      headers: { host: hostHeader, range, 'if-match': ifMatch },
    });
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const send = origin.https ? httpsRequest : httpRequest;
      const request = send({ agent: this.agent, method: 'GET', host: origin.host, port: origin.port, path: signed.path, headers: signed.headers, signal: deadline }, resolve);
      request.setTimeout(this.config.timeoutMs, () => request.destroy(new Error(`no answer from S3 within ${this.config.timeoutMs} ms`)));
      request.on('error', reject);
      request.end();
    });
    const status = response.statusCode ?? 0;
    if (status >= 300) throw new S3ErrorAnswer(await errorCode(response, status), status);
    const length = response.headers['content-length'];
    return {
      ETag: response.headers.etag,
      ContentRange: response.headers['content-range'],
      ContentLength: length === undefined ? undefined : Number(length),
      Body: response,
    };
  }

  /**
   * The signer, made once: the SDK's SigV4 for S3 (paths not escaped twice, the payload hash
   * sent) with the client's credentials and region. Undefined when the client would not sign
   * plain SigV4 for this setup (FIPS, dual-stack, accelerate endpoints).
   */
  private async signerOnce(): Promise<{ signer: SignatureV4; region: string } | undefined> {
    const config = this.client.config;
    const [region, fips, dualstack] = await Promise.all([config.region(), config.useFipsEndpoint(), config.useDualstackEndpoint()]);
    if (fips || dualstack || config.useAccelerateEndpoint) return undefined;
    return { signer: new SignatureV4({ credentials: config.credentials, region, service: 's3', sha256: config.sha256, uriEscapePath: false, applyChecksum: true }), region };
  }
}

/** The `<Code>` of an S3 error document (the SDK's error name), else a name for the status. */
async function errorCode(response: IncomingMessage, status: number): Promise<string> {
  let text = '';
  try {
    for await (const chunk of response) {
      text += (chunk as Buffer).toString('utf8');
      if (text.length > MAX_ERROR_BYTES) break;
    }
  } catch {
    // The code is a nicety; the status says enough.
  } finally {
    response.destroy();
  }
  return /<Code>([^<]{1,100})<\/Code>/.exec(text)?.[1] ?? (status === 412 ? 'PreconditionFailed' : status === 404 ? 'NotFound' : `Http${status}`);
}
