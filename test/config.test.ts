import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
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

  it('rejects tiles that the output limits could never serve', () => {
    expect(problems({ IIIF_TILE_SIZE: '1024', IIIF_MAX_WIDTH: '512' }).join()).toMatch(/must not exceed IIIF_MAX_WIDTH/);
  });

  it('rejects a drain delay that would use up the whole drain timeout', () => {
    expect(problems({ IIIF_DRAIN_DELAY_MS: '20000' }).join()).toMatch(
      /IIIF_DRAIN_DELAY_MS \(20000\) must be less than IIIF_DRAIN_TIMEOUT_MS \(20000\)/,
    );
  });
});
