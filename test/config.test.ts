import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { ConfigError } from '../src/errors.js';
import { defaultSampleFolder } from '../src/paths.js';

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  return [];
}

describe('configuration', () => {
  it('has working defaults', () => {
    const config = loadConfig({});
    expect(config).toMatchObject({
      port: 3000,
      host: '0.0.0.0',
      fileRoot: defaultSampleFolder(),
      baseUrl: undefined,
      trustProxy: false,
      limits: { maxWidth: 10_000, maxHeight: 10_000, maxArea: 25_000_000 },
      maxInputPixels: 268_402_689,
      tileSize: 256,
      drainDelayMs: 5_000,
      drainTimeoutMs: 20_000,
    });
  });

  it('reads every documented variable', () => {
    const config = loadConfig({
      PORT: '0',
      HOST: '127.0.0.1',
      IIIF_FILE_ROOT: '/data/images',
      IIIF_BASE_URL: 'https://iiif.example.org/prefix/',
      IIIF_TRUST_PROXY: 'yes',
      IIIF_MAX_WIDTH: '4000',
      IIIF_MAX_AREA: '9000000',
      IIIF_MAX_INPUT_PIXELS: '500000000',
      IIIF_TILE_SIZE: '512',
      IIIF_CACHE_MAX_AGE: '60',
      LOG_LEVEL: 'warn',
      IIIF_DRAIN_DELAY_MS: '2500',
      IIIF_DRAIN_TIMEOUT_MS: '9000',
    });
    expect(config).toMatchObject({
      port: 0,
      host: '127.0.0.1',
      fileRoot: '/data/images',
      baseUrl: 'https://iiif.example.org/prefix',
      trustProxy: true,
      limits: { maxWidth: 4000, maxHeight: 4000, maxArea: 9_000_000 },
      maxInputPixels: 500_000_000,
      tileSize: 512,
      cacheMaxAge: 60,
      logLevel: 'warn',
      drainDelayMs: 2500,
      drainTimeoutMs: 9000,
    });
  });

  it('names each bad value, all at once, on one line', () => {
    const env = { PORT: '70000', IIIF_MAX_WIDTH: '-5', IIIF_TRUST_PROXY: 'maybe', IIIF_BASE_URL: 'ftp://x', LOG_LEVEL: 'loud' };
    const found = problems(env);
    expect(found).toHaveLength(5);
    expect(found.join('\n')).toMatch(/PORT must be a whole number from 0 to 65535, got "70000"/);
    expect(found.join('\n')).toMatch(/IIIF_MAX_WIDTH .* got "-5"/);
    expect(found.join('\n')).toMatch(/IIIF_TRUST_PROXY must be true or false/);
    expect(found.join('\n')).toMatch(/IIIF_BASE_URL must be a plain http\(s\) URL/);
    expect(() => loadConfig(env)).toThrow(/^invalid configuration: [^\n]+$/);
  });

  it.each([
    ['PORT', '3000abc'],
    ['PORT', '1.5'],
    ['IIIF_MAX_AREA', '0'],
    ['IIIF_MAX_INPUT_PIXELS', '1e9'],
    ['IIIF_BASE_URL', 'not a url'],
    ['IIIF_BASE_URL', 'https://x.org/?q=1'],
    ['IIIF_TILE_SIZE', '32'],
    ['IIIF_DRAIN_DELAY_MS', '5s'],
    ['IIIF_DRAIN_TIMEOUT_MS', '0'],
  ])('rejects %s=%s', (name, value) => {
    expect(problems({ [name]: value }).join()).toContain(name);
  });

  it('reads the hardening settings: public hosts, socket deadlines, response memory, render deadline, JPEG scans', () => {
    expect(loadConfig({})).toMatchObject({
      publicHosts: undefined,
      headersTimeoutMs: 10_000,
      requestTimeoutMs: 30_000,
      keepAliveTimeoutMs: 72_000,
      writeTimeoutMs: 30_000,
      responseMemoryBytes: 256 * 2 ** 20,
      renderTimeoutSeconds: 20,
      maxJpegScans: 100,
    });
    expect(loadConfig({ IIIF_PUBLIC_HOSTS: 'Images.Example.org, cdn.example.org:8443,[::1]:3000' }).publicHosts).toEqual(['images.example.org', 'cdn.example.org:8443', '[::1]:3000']);
    expect(loadConfig({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: 'b' }).s3).toMatchObject({ listTtlSeconds: 60, missRate: 50, missBurst: 200 });
    expect(problems({ IIIF_PUBLIC_HOSTS: 'good.example, bad host' }).join()).toMatch(/IIIF_PUBLIC_HOSTS must be a comma-separated list of host names/);
    expect(problems({ IIIF_HEADERS_TIMEOUT_MS: '40000' }).join()).toMatch(/IIIF_HEADERS_TIMEOUT_MS \(40000\) must not exceed IIIF_REQUEST_TIMEOUT_MS \(30000\)/);
    expect(problems({ IIIF_RENDER_TIMEOUT_SECONDS: '0' }).join()).toMatch(/IIIF_RENDER_TIMEOUT_SECONDS/);
  });

  it('rejects tiles that the output limits could never serve', () => {
    expect(problems({ IIIF_TILE_SIZE: '1024', IIIF_MAX_WIDTH: '512' }).join()).toMatch(/must not exceed IIIF_MAX_WIDTH/);
  });

  describe('S3 source and caches', () => {
    it('uses the folder source and no admin routes by default', () => {
      expect(loadConfig({})).toMatchObject({ source: 'folder', s3: undefined, adminToken: undefined });
    });

    it('reads the S3 settings, with path-style addressing on by default for a custom endpoint', () => {
      const config = loadConfig({
        IIIF_SOURCE: 's3',
        IIIF_S3_BUCKET: 'images',
        IIIF_S3_PREFIX: 'iiif/',
        IIIF_S3_ENDPOINT: 'http://127.0.0.1:9000',
        IIIF_CACHE_DIR: '/var/cache/iiif',
        IIIF_CACHE_MAX_BYTES: '2000000000',
        IIIF_S3_REVALIDATE_SECONDS: '60',
        IIIF_ADMIN_TOKEN: 'sixteen-chars-ok',
      });
      expect(config).toMatchObject({
        source: 's3',
        s3: { bucket: 'images', prefix: 'iiif/', endpoint: 'http://127.0.0.1:9000', forcePathStyle: true, region: undefined, revalidateSeconds: 60, maxAttempts: 3, blockBytes: 65_536 },
        cache: { dir: '/var/cache/iiif', maxBytes: 2_000_000_000 },
        adminToken: 'sixteen-chars-ok',
      });
      expect(loadConfig({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: 'b' }).s3?.forcePathStyle).toBe(false);
      expect(loadConfig({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: 'b', IIIF_S3_ENDPOINT: 'http://x', IIIF_S3_FORCE_PATH_STYLE: 'false' }).s3?.forcePathStyle).toBe(false);
    });

    it('requires a bucket for the S3 source, a sane endpoint and a long enough admin token', () => {
      expect(problems({ IIIF_SOURCE: 's3' })).toEqual(['IIIF_S3_BUCKET must be set when IIIF_SOURCE is s3']);
      expect(problems({ IIIF_SOURCE: 'ftp' }).join()).toMatch(/IIIF_SOURCE must be one of folder, s3/);
      expect(problems({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: 'b', IIIF_S3_ENDPOINT: 'localhost:9000' }).join()).toMatch(/IIIF_S3_ENDPOINT must be an absolute http\(s\) URL/);
      expect(problems({ IIIF_ADMIN_TOKEN: 'short' }).join()).toMatch(/IIIF_ADMIN_TOKEN must be at least 16 characters/);
      expect(problems({ IIIF_CACHE_MAX_BYTES: '1000' }).join()).toMatch(/IIIF_CACHE_MAX_BYTES/);
      expect(problems({ IIIF_SOURCE: 's3', IIIF_S3_BUCKET: 'b', IIIF_S3_BLOCK_BYTES: '1024' }).join()).toMatch(/IIIF_S3_BLOCK_BYTES must be a whole number from 4096 to 8388608/);
    });

    it('keeps shared derivatives off unless IIIF_DERIVATIVE_PREFIX is set, in the source bucket unless another is named', () => {
      const s3 = { IIIF_SOURCE: 's3', IIIF_S3_BUCKET: 'images' };
      expect(loadConfig(s3).derivatives).toBeUndefined();
      expect(loadConfig({ IIIF_DERIVATIVE_PREFIX: 'derivatives/' }).derivatives).toBeUndefined();
      expect(loadConfig({ ...s3, IIIF_DERIVATIVE_PREFIX: 'derivatives/' }).derivatives).toEqual({ bucket: 'images', prefix: 'derivatives/', leaseSeconds: 120, waitMs: 10_000 });
      expect(
        loadConfig({ ...s3, IIIF_DERIVATIVE_PREFIX: 'd/', IIIF_DERIVATIVE_BUCKET: 'derived', IIIF_DERIVATIVE_LEASE_SECONDS: '300', IIIF_DERIVATIVE_WAIT_MS: '0' }).derivatives,
      ).toEqual({ bucket: 'derived', prefix: 'd/', leaseSeconds: 300, waitMs: 0 });
      expect(problems({ ...s3, IIIF_DERIVATIVE_BUCKET: 'derived' })).toEqual(['IIIF_DERIVATIVE_BUCKET is set but IIIF_DERIVATIVE_PREFIX is not']);
      expect(problems({ ...s3, IIIF_DERIVATIVE_PREFIX: '/derivatives/' })).toEqual(['IIIF_DERIVATIVE_PREFIX must not start with "/", got "/derivatives/"']);
    });
  });

  it('serves metrics on the main port by default, or only on IIIF_METRICS_PORT, or not at all', () => {
    expect(loadConfig({})).toMatchObject({ metrics: true, metricsPort: undefined, listLimit: 1000 });
    expect(loadConfig({ IIIF_METRICS_PORT: '9100', IIIF_LIST_LIMIT: '20' })).toMatchObject({ metrics: true, metricsPort: 9100, listLimit: 20 });
    expect(loadConfig({ IIIF_METRICS: 'off' })).toMatchObject({ metrics: false, metricsPort: undefined });
    expect(problems({ IIIF_METRICS: 'maybe' }).join()).toMatch(/IIIF_METRICS must be one of on, off/);
    expect(problems({ IIIF_METRICS: 'off', IIIF_METRICS_PORT: '9100' }).join()).toMatch(/IIIF_METRICS_PORT is set but IIIF_METRICS is off/);
    expect(problems({ PORT: '8080', IIIF_METRICS_PORT: '8080' }).join()).toMatch(/IIIF_METRICS_PORT \(8080\) must differ from PORT/);
    expect(problems({ IIIF_METRICS_PORT: '65536' }).join()).toMatch(/IIIF_METRICS_PORT must be a whole number/);
  });

  it('rejects a drain delay that would use up the whole drain timeout', () => {
    expect(problems({ IIIF_DRAIN_DELAY_MS: '20000' }).join()).toMatch(
      /IIIF_DRAIN_DELAY_MS \(20000\) must be less than IIIF_DRAIN_TIMEOUT_MS \(20000\)/,
    );
  });
});
