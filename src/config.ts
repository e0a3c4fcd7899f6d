import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { isHostName } from './http/host-name.js';
import { defaultSampleFolder } from './paths.js';
import type { OutputLimits } from './iiif/request.js';

/** Everything the server reads from its environment, typed and validated once at start. */
export interface Config {
  port: number;
  host: string;
  logLevel: string;
  /** One log line per request (fastify's request logging). */
  accessLog: boolean;
  fileRoot: string;
  /** How long a resolved identifier is trusted before the file is looked at again. */
  sourceRecheckMs: number;
  /** Public base URL (scheme, host, optional path prefix) used for `id`; no trailing slash. */
  baseUrl: string | undefined;
  trustProxy: boolean;
  /**
   * Host names (with optional port) the server may put in public URLs when IIIF_BASE_URL is not
   * set; a request naming another host gets the first. undefined: the Host header, validated.
   */
  publicHosts: string[] | undefined;
  /** Socket deadlines: the whole request head, the whole request, and an idle keep-alive connection. */
  headersTimeoutMs: number;
  requestTimeoutMs: number;
  keepAliveTimeoutMs: number;
  /** A response whose client takes no bytes for this long is cut off (its memory released). */
  writeTimeoutMs: number;
  /** Response bodies in flight (handed to sockets, not yet sent) may hold at most this many bytes. */
  responseMemoryBytes: number;
  limits: OutputLimits;
  maxInputPixels: number;
  tileSize: number;
  /** max-age, in seconds, for image and info.json responses. */
  cacheMaxAge: number;
  /** How many probed images (dimensions, pyramid levels) to keep in memory. */
  metadataCacheEntries: number;
  /** Rendered results kept in memory, in bytes, and the largest single result kept. */
  resultCacheBytes: number;
  resultCacheMaxItemBytes: number;
  /** Admission control: the cheap (tile-sized) and expensive (large render) lanes. */
  renderConcurrency: number;
  renderQueue: number;
  largeRenderConcurrency: number;
  largeRenderQueue: number;
  /** Longest a render may wait for a slot before the request is answered 503. */
  queueTimeoutMs: number;
  /** Retry-After on a 503 from the cheap and the expensive lane, and when a conversion has no room. */
  renderRetryAfterSeconds: number;
  largeRenderRetryAfterSeconds: number;
  conversionRetryAfterSeconds: number;
  /** Source files kept open for stored-tile reads. */
  openTileFiles: number;
  /** Output pixels above which a render goes to the expensive lane. */
  largeRenderPixels: number;
  /** Estimated memory one render may need; a request needing more is refused with 413. */
  renderMemoryBytes: number;
  /** Longest a render may run (sharp's timeout); estimated longer ones are refused at once with 413. */
  renderTimeoutSeconds: number;
  /** Most scans a progressive JPEG may have; each costs a pass over the whole image when decoding. */
  maxJpegScans: number;
  /** libvips threads per sharp pipeline (parallelism comes from concurrent requests). */
  sharpConcurrency: number;
  /** libvips operation cache in MiB (0 turns it off). */
  sharpCacheMb: number;
  /** Where images come from: a local folder (fileRoot) or an S3 bucket (s3). */
  source: 'folder' | 's3';
  /** Set exactly when source is 's3'. */
  s3: S3Config | undefined;
  /** Local disk cache for remote source objects. */
  cache: { dir: string; maxBytes: number };
  /** Bearer token for /admin routes; undefined disables them. */
  adminToken: string | undefined;
  /** Pyramids made on first touch: their folder, bound, size threshold (0 = never) and tile quality. */
  pyramids: { dir: string; maxBytes: number; thresholdPixels: number; quality: number; tileSize: number; maxInputPixels: number };
  /** Whether /metrics is served at all. */
  metrics: boolean;
  /** When set, /metrics is served only on this port (a second listener on `host`), not on `port`. */
  metricsPort: number | undefined;
  /** Most images the viewer's index page lists, so a huge collection cannot make `/` unbounded. */
  listLimit: number;
  /** After a stop signal: how long to keep serving while /health fails, in ms. */
  drainDelayMs: number;
  /** After a stop signal: the most time until the process exits, in ms. */
  drainTimeoutMs: number;
}

export interface S3Config {
  bucket: string;
  /** Prepended to the identifier to make the object key. */
  prefix: string;
  /** An S3-compatible endpoint URL; undefined means AWS's own. */
  endpoint: string | undefined;
  forcePathStyle: boolean;
  /** undefined leaves the region to the AWS chain (AWS_REGION, which ECS sets). */
  region: string | undefined;
  /** Longest wait for a connection or for the next bytes of a response, per attempt. */
  timeoutMs: number;
  /** Hard limit for one fetch, all attempts and backoff included. */
  deadlineMs: number;
  maxAttempts: number;
  /** How long a cached object is served before S3 is asked whether it changed. */
  revalidateSeconds: number;
  /** How long "no such key" is remembered. */
  negativeTtlSeconds: number;
  negativeCacheEntries: number;
  /** Largest object fetched into memory when the disk cache cannot be written. */
  memoryFallbackMaxBytes: number;
  /** Retry-After on a 503 caused by S3 being unavailable. */
  retryAfterSeconds: number;
  /** How long a listing of the bucket (the viewer's index page) is reused. */
  listTtlSeconds: number;
  /** Fetches of objects not in the disk cache: per second on average, and at most this many at once. */
  missRate: number;
  missBurst: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

type Env = Record<string, string | undefined>;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

/**
 * Reads the configuration from an environment. Collects every problem before failing, so an
 * operator fixes them all in one go; the message is a single line for the orchestrator's log.
 */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const read = new EnvReader(env, problems);

  const maxWidth = read.integer('IIIF_MAX_WIDTH', 10_000, 1, 1_000_000);
  const maxInputPixels = read.integer('IIIF_MAX_INPUT_PIXELS', 268_402_689, 1, 10_000_000_000);
  const tileSize = read.integer('IIIF_TILE_SIZE', 256, 64, 4096);
  const config: Config = {
    port: read.integer('PORT', 3000, 0, 65_535),
    host: read.string('HOST', '0.0.0.0'),
    logLevel: read.oneOf('LOG_LEVEL', 'info', LOG_LEVELS),
    accessLog: read.boolean('IIIF_ACCESS_LOG', true),
    fileRoot: read.string('IIIF_FILE_ROOT', defaultSampleFolder()),
    sourceRecheckMs: read.integer('IIIF_SOURCE_RECHECK_MS', 1000, 0, 3_600_000),
    baseUrl: read.baseUrl('IIIF_BASE_URL'),
    trustProxy: read.boolean('IIIF_TRUST_PROXY', false),
    publicHosts: read.hostList('IIIF_PUBLIC_HOSTS'),
    // A client or load balancer sends its request head at once; 3,000 connections trickling
    // bytes must not be held for minutes (Node checks these every second, see src/http/timeouts.ts).
    headersTimeoutMs: read.integer('IIIF_HEADERS_TIMEOUT_MS', 10_000, 1_000, 600_000),
    requestTimeoutMs: read.integer('IIIF_REQUEST_TIMEOUT_MS', 30_000, 1_000, 600_000),
    // Longer than the ALB's 60 s idle timeout, so the balancer closes idle connections first.
    keepAliveTimeoutMs: read.integer('IIIF_KEEP_ALIVE_TIMEOUT_MS', 72_000, 1_000, 600_000),
    writeTimeoutMs: read.integer('IIIF_WRITE_TIMEOUT_MS', 30_000, 1_000, 600_000),
    responseMemoryBytes: read.integer('IIIF_RESPONSE_MEMORY_BYTES', 256 * 1024 ** 2, 1024 * 1024, 1024 ** 4),
    limits: {
      maxWidth,
      // The spec: when only maxWidth is given, clients infer maxHeight = maxWidth.
      maxHeight: read.integer('IIIF_MAX_HEIGHT', maxWidth, 1, 1_000_000),
      maxArea: read.integer('IIIF_MAX_AREA', 25_000_000, 1, 1_000_000_000_000),
    },
    maxInputPixels,
    tileSize,
    cacheMaxAge: read.integer('IIIF_CACHE_MAX_AGE', 86_400, 0, 31_536_000),
    metadataCacheEntries: read.integer('IIIF_METADATA_CACHE_ENTRIES', 10_000, 1, 10_000_000),
    resultCacheBytes: read.integer('IIIF_RESULT_CACHE_BYTES', 128 * 1024 * 1024, 0, 64 * 1024 ** 3),
    resultCacheMaxItemBytes: read.integer('IIIF_RESULT_CACHE_MAX_ITEM_BYTES', 1024 * 1024, 1, 1024 ** 3),
    // One render per core keeps the CPU busy; a few more cover the I/O waits between them.
    renderConcurrency: read.integer('IIIF_RENDER_CONCURRENCY', availableParallelism() * 2, 1, 1024),
    renderQueue: read.integer('IIIF_RENDER_QUEUE', 256, 0, 100_000),
    largeRenderConcurrency: read.integer('IIIF_LARGE_RENDER_CONCURRENCY', 1, 1, 1024),
    largeRenderQueue: read.integer('IIIF_LARGE_RENDER_QUEUE', 8, 0, 100_000),
    queueTimeoutMs: read.integer('IIIF_QUEUE_TIMEOUT_MS', 10_000, 1, 600_000),
    renderRetryAfterSeconds: read.integer('IIIF_RENDER_RETRY_AFTER_SECONDS', 1, 1, 3_600),
    largeRenderRetryAfterSeconds: read.integer('IIIF_LARGE_RENDER_RETRY_AFTER_SECONDS', 5, 1, 3_600),
    conversionRetryAfterSeconds: read.integer('IIIF_CONVERSION_RETRY_AFTER_SECONDS', 30, 1, 3_600),
    openTileFiles: read.integer('IIIF_OPEN_TILE_FILES', 64, 1, 10_000),
    largeRenderPixels: read.integer('IIIF_LARGE_RENDER_PIXELS', 1024 * 1024, 1, 1_000_000_000_000),
    renderMemoryBytes: read.integer('IIIF_RENDER_MEMORY_BYTES', 1024 ** 3, 1024 * 1024, 1024 ** 4),
    renderTimeoutSeconds: read.integer('IIIF_RENDER_TIMEOUT_SECONDS', 20, 1, 3_600),
    // libjpeg's own encoder writes at most 100 scans from a script; common encoders write 10 or fewer.
    maxJpegScans: read.integer('IIIF_MAX_JPEG_SCANS', 100, 1, 100_000),
    sharpConcurrency: read.integer('IIIF_SHARP_CONCURRENCY', 1, 0, 1024),
    sharpCacheMb: read.integer('IIIF_SHARP_CACHE_MB', 64, 0, 65_536),
    source: read.oneOf('IIIF_SOURCE', 'folder', ['folder', 's3']) as Config['source'],
    s3: undefined,
    cache: {
      dir: read.string('IIIF_CACHE_DIR', join(tmpdir(), 'iiif-elastic-cache')),
      maxBytes: read.integer('IIIF_CACHE_MAX_BYTES', 10 * 1024 ** 3, 1024 * 1024, Number.MAX_SAFE_INTEGER),
    },
    adminToken: read.string('IIIF_ADMIN_TOKEN', '') || undefined,
    pyramids: {
      dir: read.string('IIIF_PYRAMID_DIR', join(tmpdir(), 'iiif-elastic-pyramids')),
      maxBytes: read.integer('IIIF_PYRAMID_CACHE_MAX_BYTES', 10 * 1024 ** 3, 1024 * 1024, Number.MAX_SAFE_INTEGER),
      thresholdPixels: read.integer('IIIF_PYRAMID_THRESHOLD_PIXELS', 16_000_000, 0, Number.MAX_SAFE_INTEGER),
      quality: read.integer('IIIF_PYRAMID_QUALITY', 85, 1, 100),
      // Tiled as info.json advertises, decoded within the same input limit.
      tileSize,
      maxInputPixels,
    },
    metrics: read.oneOf('IIIF_METRICS', 'on', ['on', 'off']) === 'on',
    metricsPort: read.optionalInteger('IIIF_METRICS_PORT', 0, 65_535),
    listLimit: read.integer('IIIF_LIST_LIMIT', 1000, 1, 100_000),
    // Defaults: HAProxy (inter 1s fall 2) and an ALB notice a failing /health within 5 s, and
    // the whole drain ends well before ECS's 30 s stopTimeout sends SIGKILL.
    drainDelayMs: read.integer('IIIF_DRAIN_DELAY_MS', 5_000, 0, 600_000),
    drainTimeoutMs: read.integer('IIIF_DRAIN_TIMEOUT_MS', 20_000, 1, 600_000),
  };
  if (config.source === 's3') config.s3 = readS3(read, problems);
  if (config.adminToken !== undefined && config.adminToken.length < 16) {
    problems.push('IIIF_ADMIN_TOKEN must be at least 16 characters');
  }
  if (config.tileSize > Math.min(config.limits.maxWidth, config.limits.maxHeight)) {
    problems.push(`IIIF_TILE_SIZE (${config.tileSize}) must not exceed IIIF_MAX_WIDTH and IIIF_MAX_HEIGHT`);
  }
  if (config.tileSize * config.tileSize > config.limits.maxArea) {
    problems.push(`IIIF_TILE_SIZE (${config.tileSize}) squared must not exceed IIIF_MAX_AREA`);
  }
  if (config.metricsPort !== undefined) {
    if (!config.metrics) problems.push('IIIF_METRICS_PORT is set but IIIF_METRICS is off');
    // Port 0 twice is fine: each listener gets its own free port.
    else if (config.metricsPort !== 0 && config.metricsPort === config.port) {
      problems.push(`IIIF_METRICS_PORT (${config.metricsPort}) must differ from PORT`);
    }
  }
  if (config.headersTimeoutMs > config.requestTimeoutMs) {
    problems.push(`IIIF_HEADERS_TIMEOUT_MS (${config.headersTimeoutMs}) must not exceed IIIF_REQUEST_TIMEOUT_MS (${config.requestTimeoutMs})`);
  }
  if (config.drainDelayMs >= config.drainTimeoutMs) {
    problems.push(`IIIF_DRAIN_DELAY_MS (${config.drainDelayMs}) must be less than IIIF_DRAIN_TIMEOUT_MS (${config.drainTimeoutMs})`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

function readS3(read: EnvReader, problems: string[]): S3Config {
  const bucket = read.string('IIIF_S3_BUCKET', '');
  if (bucket === '') problems.push('IIIF_S3_BUCKET must be set when IIIF_SOURCE is s3');
  const endpoint = read.url('IIIF_S3_ENDPOINT');
  const prefix = read.string('IIIF_S3_PREFIX', '');
  // The identifier is appended to the prefix: "iiif" + "-private/secret.jpg" would read outside it.
  if (prefix !== '' && !prefix.endsWith('/')) {
    problems.push(`IIIF_S3_PREFIX must be empty or end with "/" (a folder), got "${prefix}"; with "${prefix}" an identifier could name keys beside it`);
  }
  return {
    bucket,
    prefix,
    endpoint,
    // S3-compatible stores (MinIO, s3rver, Ceph) rarely have per-bucket DNS names.
    forcePathStyle: read.boolean('IIIF_S3_FORCE_PATH_STYLE', endpoint !== undefined),
    region: read.string('IIIF_S3_REGION', '') || undefined,
    timeoutMs: read.integer('IIIF_S3_TIMEOUT_MS', 5_000, 100, 600_000),
    deadlineMs: read.integer('IIIF_S3_DEADLINE_MS', 20_000, 100, 3_600_000),
    maxAttempts: read.integer('IIIF_S3_MAX_ATTEMPTS', 3, 1, 10),
    revalidateSeconds: read.integer('IIIF_S3_REVALIDATE_SECONDS', 300, 0, 31_536_000),
    negativeTtlSeconds: read.integer('IIIF_S3_NEGATIVE_TTL_SECONDS', 30, 0, 86_400),
    negativeCacheEntries: read.integer('IIIF_S3_NEGATIVE_CACHE_ENTRIES', 10_000, 1, 10_000_000),
    memoryFallbackMaxBytes: read.integer('IIIF_S3_MEMORY_FALLBACK_MAX_BYTES', 256 * 1024 ** 2, 0, Number.MAX_SAFE_INTEGER),
    retryAfterSeconds: read.integer('IIIF_S3_RETRY_AFTER_SECONDS', 5, 1, 3_600),
    listTtlSeconds: read.integer('IIIF_S3_LIST_TTL_SECONDS', 60, 0, 86_400),
    // A viewer's first look at a page of thumbnails misses for each image at once; a probe of
    // thousands of made-up identifiers must not become as many GETs (and temporary files).
    missRate: read.integer('IIIF_S3_MISS_RATE', 50, 1, 100_000),
    missBurst: read.integer('IIIF_S3_MISS_BURST', 200, 1, 1_000_000),
  };
}

class EnvReader {
  constructor(
    private readonly env: Env,
    private readonly problems: string[],
  ) {}

  private raw(name: string): string | undefined {
    const value = this.env[name]?.trim();
    return value === '' ? undefined : value;
  }

  string(name: string, fallback: string): string {
    return this.raw(name) ?? fallback;
  }

  integer(name: string, fallback: number, min: number, max: number): number {
    return this.optionalInteger(name, min, max) ?? fallback;
  }

  optionalInteger(name: string, min: number, max: number): number | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const parsed = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      this.problems.push(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
      return undefined;
    }
    return parsed;
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.raw(name)?.toLowerCase();
    if (value === undefined) return fallback;
    if (['true', '1', 'yes'].includes(value)) return true;
    if (['false', '0', 'no'].includes(value)) return false;
    this.problems.push(`${name} must be true or false, got "${value}"`);
    return fallback;
  }

  oneOf(name: string, fallback: string, allowed: string[]): string {
    const value = this.raw(name);
    if (value === undefined) return fallback;
    if (allowed.includes(value)) return value;
    this.problems.push(`${name} must be one of ${allowed.join(', ')}, got "${value}"`);
    return fallback;
  }

  url(name: string): string | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const url = URL.canParse(value) ? new URL(value) : undefined;
    if (!url || !['http:', 'https:'].includes(url.protocol)) {
      this.problems.push(`${name} must be an absolute http(s) URL, got "${value}"`);
      return undefined;
    }
    return value;
  }

  /** A comma-separated list of host names, each with an optional port; undefined when unset. */
  hostList(name: string): string[] | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    const hosts = value.split(',').map((host) => host.trim().toLowerCase());
    const bad = hosts.filter((host) => !isHostName(host));
    if (bad.length > 0) {
      this.problems.push(`${name} must be a comma-separated list of host names (with optional ports), got "${value}"`);
      return undefined;
    }
    return hosts;
  }

  baseUrl(name: string): string | undefined {
    const value = this.raw(name);
    if (value === undefined) return undefined;
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      this.problems.push(`${name} must be an absolute http(s) URL, got "${value}"`);
      return undefined;
    }
    if (!['http:', 'https:'].includes(url.protocol) || url.search || url.hash || url.username) {
      this.problems.push(`${name} must be a plain http(s) URL without query, fragment or credentials, got "${value}"`);
      return undefined;
    }
    return url.href.replace(/\/+$/, '');
  }
}
