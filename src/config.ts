import { settingNamed, SETTINGS, type Setting, type SettingLookup } from './config/settings.js';
import { ConfigError, ServerError } from './errors.js';
import type { ClientMissLimits } from './http/client-misses.js';
import { isHostName } from './http/host-name.js';
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
  /** Requests for unknown identifiers one client address may make (src/http/client-misses.ts). */
  clientMisses: ClientMissLimits;
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
  /** Retry-After on a 503 from the cheap and the expensive lane. */
  renderRetryAfterSeconds: number;
  largeRenderRetryAfterSeconds: number;
  /** JPEG 2000 files kept in memory for decoding, in bytes. */
  jp2MemoryBytes: number;
  /** OpenJPEG threads per JPEG 2000 decode. */
  jp2DecodeThreads: number;
  /** Source files kept open for stored-tile reads. */
  openTileFiles: number;
  /** Whether stored JPEG tiles are rendered by the native libjpeg-turbo addon when it is built (else by sharp). */
  nativeJpeg: boolean;
  /** Encoder settings for rendered output. */
  encoding: Encoding;
  /** Output pixels above which a render goes to the expensive lane. */
  largeRenderPixels: number;
  /** Estimated memory one render may need; a request needing more is refused with 413. */
  renderMemoryBytes: number;
  /** Longest a render may run (sharp's timeout); estimated longer ones are refused at once with 413. */
  renderTimeoutSeconds: number;
  /** Most scans a JPEG may have; each costs a pass over the whole image when decoding. */
  maxJpegScans: number;
  /** libvips threads per sharp pipeline (parallelism comes from concurrent requests). */
  sharpConcurrency: number;
  /** libvips operation cache in MiB (0 turns it off). */
  sharpCacheMb: number;
  /** Where images come from: a local folder (fileRoot) or an S3 bucket (s3). */
  source: 'folder' | 's3';
  /** Set exactly when source is 's3'. */
  s3: S3Config | undefined;
  /** The fleet's shared derivative store; set when source is 's3' and IIIF_DERIVATIVE_PREFIX is set. */
  derivatives: DerivativeConfig | undefined;
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

export interface Encoding {
  jpegQuality: number;
  webpQuality: number;
  avifQuality: number;
  avifEffort: number;
  pngCompression: number;
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
  /** Objects are read by range in blocks of this size: the unit fetched and cached on disk. */
  blockBytes: number;
}

/** Where the fleet keeps pyramids made once per source version, and how containers share the work. */
export interface DerivativeConfig {
  /** The source bucket unless IIIF_DERIVATIVE_BUCKET names another. */
  bucket: string;
  /** Key prefix of every derivative; never empty. */
  prefix: string;
  /** How long a claim to convert one source version lasts before another container may take it over. */
  leaseSeconds: number;
  /** Longest a request waits for another container's conversion before serving from the source. */
  waitMs: number;
}

type Env = Record<string, string | undefined>;

/**
 * Reads the configuration from an environment, every variable checked against its entry in
 * SETTINGS. Collects every problem before failing, so an operator fixes them all in one go;
 * the message is a single line for the orchestrator's log.
 */
export function loadConfig(env: Env = process.env): Config {
  const problems: string[] = [];
  const read = new SettingsReader(env, problems);
  const source = read.choice('IIIF_SOURCE') as Config['source'];
  // Every setting is checked (S3 ones only with the S3 source), even those assembled below.
  for (const setting of SETTINGS) if (!setting.s3 || source === 's3') read.value(setting);
  const tileSize = read.integer('IIIF_TILE_SIZE');
  const maxInputPixels = read.integer('IIIF_MAX_INPUT_PIXELS');
  const config: Config = {
    port: read.integer('PORT'),
    host: read.string('HOST'),
    logLevel: read.choice('LOG_LEVEL'),
    accessLog: read.boolean('IIIF_ACCESS_LOG'),
    fileRoot: read.string('IIIF_FILE_ROOT'),
    sourceRecheckMs: read.integer('IIIF_SOURCE_RECHECK_MS'),
    baseUrl: read.optionalUrl('IIIF_BASE_URL'),
    trustProxy: read.boolean('IIIF_TRUST_PROXY'),
    publicHosts: hostList(read.string('IIIF_PUBLIC_HOSTS'), problems),
    clientMisses: { ratePerSecond: read.integer('IIIF_CLIENT_MISS_RATE'), burst: read.integer('IIIF_CLIENT_MISS_BURST') },
    headersTimeoutMs: read.integer('IIIF_HEADERS_TIMEOUT_MS'),
    requestTimeoutMs: read.integer('IIIF_REQUEST_TIMEOUT_MS'),
    keepAliveTimeoutMs: read.integer('IIIF_KEEP_ALIVE_TIMEOUT_MS'),
    writeTimeoutMs: read.integer('IIIF_WRITE_TIMEOUT_MS'),
    responseMemoryBytes: read.integer('IIIF_RESPONSE_MEMORY_BYTES'),
    limits: {
      maxWidth: read.integer('IIIF_MAX_WIDTH'),
      // The spec: when only maxWidth is given, clients infer maxHeight = maxWidth.
      maxHeight: read.integer('IIIF_MAX_HEIGHT'),
      maxArea: read.integer('IIIF_MAX_AREA'),
    },
    maxInputPixels,
    tileSize,
    cacheMaxAge: read.integer('IIIF_CACHE_MAX_AGE'),
    metadataCacheEntries: read.integer('IIIF_METADATA_CACHE_ENTRIES'),
    resultCacheBytes: read.integer('IIIF_RESULT_CACHE_BYTES'),
    resultCacheMaxItemBytes: read.integer('IIIF_RESULT_CACHE_MAX_ITEM_BYTES'),
    renderConcurrency: read.integer('IIIF_RENDER_CONCURRENCY'),
    renderQueue: read.integer('IIIF_RENDER_QUEUE'),
    largeRenderConcurrency: read.integer('IIIF_LARGE_RENDER_CONCURRENCY'),
    largeRenderQueue: read.integer('IIIF_LARGE_RENDER_QUEUE'),
    queueTimeoutMs: read.integer('IIIF_QUEUE_TIMEOUT_MS'),
    renderRetryAfterSeconds: read.integer('IIIF_RENDER_RETRY_AFTER_SECONDS'),
    largeRenderRetryAfterSeconds: read.integer('IIIF_LARGE_RENDER_RETRY_AFTER_SECONDS'),
    jp2MemoryBytes: read.integer('IIIF_JP2_MEMORY_BYTES'),
    jp2DecodeThreads: read.integer('IIIF_JP2_DECODE_THREADS'),
    openTileFiles: read.integer('IIIF_OPEN_TILE_FILES'),
    nativeJpeg: read.boolean('IIIF_NATIVE_JPEG'),
    encoding: {
      jpegQuality: read.integer('IIIF_JPEG_QUALITY'),
      webpQuality: read.integer('IIIF_WEBP_QUALITY'),
      avifQuality: read.integer('IIIF_AVIF_QUALITY'),
      avifEffort: read.integer('IIIF_AVIF_EFFORT'),
      pngCompression: read.integer('IIIF_PNG_COMPRESSION'),
    },
    largeRenderPixels: read.integer('IIIF_LARGE_RENDER_PIXELS'),
    renderMemoryBytes: read.integer('IIIF_RENDER_MEMORY_BYTES'),
    renderTimeoutSeconds: read.integer('IIIF_RENDER_TIMEOUT_SECONDS'),
    maxJpegScans: read.integer('IIIF_MAX_JPEG_SCANS'),
    sharpConcurrency: read.integer('IIIF_SHARP_CONCURRENCY'),
    sharpCacheMb: read.integer('IIIF_SHARP_CACHE_MB'),
    source,
    s3: source === 's3' ? readS3(read, problems) : undefined,
    derivatives: source === 's3' ? readDerivatives(read, problems) : undefined,
    cache: { dir: read.string('IIIF_CACHE_DIR'), maxBytes: read.integer('IIIF_CACHE_MAX_BYTES') },
    adminToken: read.string('IIIF_ADMIN_TOKEN') || undefined,
    pyramids: {
      dir: read.string('IIIF_PYRAMID_DIR'),
      maxBytes: read.integer('IIIF_PYRAMID_CACHE_MAX_BYTES'),
      thresholdPixels: read.integer('IIIF_PYRAMID_THRESHOLD_PIXELS'),
      quality: read.integer('IIIF_PYRAMID_QUALITY'),
      // Tiled as info.json advertises, decoded within the same input limit.
      tileSize,
      maxInputPixels,
    },
    metrics: read.choice('IIIF_METRICS') === 'on',
    metricsPort: read.optionalInteger('IIIF_METRICS_PORT'),
    listLimit: read.integer('IIIF_LIST_LIMIT'),
    drainDelayMs: read.integer('IIIF_DRAIN_DELAY_MS'),
    drainTimeoutMs: read.integer('IIIF_DRAIN_TIMEOUT_MS'),
  };
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

function readS3(read: SettingsReader, problems: string[]): S3Config {
  const bucket = read.string('IIIF_S3_BUCKET');
  if (bucket === '') problems.push('IIIF_S3_BUCKET must be set when IIIF_SOURCE is s3');
  const prefix = read.string('IIIF_S3_PREFIX');
  // The identifier is appended to the prefix: "iiif" + "-private/secret.jpg" would read outside it.
  if (prefix !== '' && !prefix.endsWith('/')) {
    problems.push(`IIIF_S3_PREFIX must be empty or end with "/" (a folder), got "${prefix}"; with "${prefix}" an identifier could name keys beside it`);
  }
  return {
    bucket,
    prefix,
    endpoint: read.optionalUrl('IIIF_S3_ENDPOINT'),
    forcePathStyle: read.boolean('IIIF_S3_FORCE_PATH_STYLE'),
    region: read.string('IIIF_S3_REGION') || undefined,
    timeoutMs: read.integer('IIIF_S3_TIMEOUT_MS'),
    deadlineMs: read.integer('IIIF_S3_DEADLINE_MS'),
    maxAttempts: read.integer('IIIF_S3_MAX_ATTEMPTS'),
    revalidateSeconds: read.integer('IIIF_S3_REVALIDATE_SECONDS'),
    negativeTtlSeconds: read.integer('IIIF_S3_NEGATIVE_TTL_SECONDS'),
    negativeCacheEntries: read.integer('IIIF_S3_NEGATIVE_CACHE_ENTRIES'),
    memoryFallbackMaxBytes: read.integer('IIIF_S3_MEMORY_FALLBACK_MAX_BYTES'),
    retryAfterSeconds: read.integer('IIIF_S3_RETRY_AFTER_SECONDS'),
    listTtlSeconds: read.integer('IIIF_S3_LIST_TTL_SECONDS'),
    missRate: read.integer('IIIF_S3_MISS_RATE'),
    missBurst: read.integer('IIIF_S3_MISS_BURST'),
    blockBytes: read.integer('IIIF_S3_BLOCK_BYTES'),
  };
}

/** IIIF_PUBLIC_HOSTS: host names, each with an optional port, lower-cased; undefined when empty. */
function hostList(value: string, problems: string[]): string[] | undefined {
  if (value === '') return undefined;
  const hosts = value.split(',').map((host) => host.trim().toLowerCase());
  if (hosts.every(isHostName)) return hosts;
  problems.push(`IIIF_PUBLIC_HOSTS must be a comma-separated list of host names (with optional ports), got "${value}"`);
  return undefined;
}

function readDerivatives(read: SettingsReader, problems: string[]): DerivativeConfig | undefined {
  const prefix = read.string('IIIF_DERIVATIVE_PREFIX');
  const bucket = read.string('IIIF_DERIVATIVE_BUCKET');
  if (prefix === '') {
    if (bucket !== '') problems.push('IIIF_DERIVATIVE_BUCKET is set but IIIF_DERIVATIVE_PREFIX is not');
    return undefined;
  }
  if (prefix.startsWith('/')) problems.push(`IIIF_DERIVATIVE_PREFIX must not start with "/", got "${prefix}"`);
  return {
    bucket: bucket || read.string('IIIF_S3_BUCKET'),
    prefix,
    leaseSeconds: read.integer('IIIF_DERIVATIVE_LEASE_SECONDS'),
    waitMs: read.integer('IIIF_DERIVATIVE_WAIT_MS'),
  };
}

type Value = number | boolean | string | undefined;

/**
 * Reads each variable once, as its table entry says: a malformed value is one problem, and
 * the default stands in for it so the rest of the configuration can still be checked.
 */
class SettingsReader implements SettingLookup {
  private readonly values = new Map<string, Value>();

  constructor(
    private readonly env: Env,
    private readonly problems: string[],
  ) {}

  value(setting: Setting): Value {
    if (!this.values.has(setting.name)) this.values.set(setting.name, this.parse(setting));
    return this.values.get(setting.name);
  }

  integer(name: string): number {
    return this.expect(name, 'number') as number;
  }

  optionalInteger(name: string): number | undefined {
    return this.value(settingNamed(name)) as number | undefined;
  }

  boolean(name: string): boolean {
    return this.expect(name, 'boolean') as boolean;
  }

  string(name: string): string {
    return this.expect(name, 'string') as string;
  }

  choice(name: string): string {
    return this.string(name);
  }

  optionalUrl(name: string): string | undefined {
    return this.value(settingNamed(name)) as string | undefined;
  }

  private expect(name: string, type: 'number' | 'boolean' | 'string'): Value {
    const value = this.value(settingNamed(name));
    if (typeof value !== type) throw new ServerError('SETTING_TYPE', `${name} is not a ${type} setting with a default`);
    return value;
  }

  private parse(setting: Setting): Value {
    const raw = this.env[setting.name]?.trim() || undefined;
    const fallback = (): Value => ('default' in setting ? (typeof setting.default === 'function' ? setting.default(this) : setting.default) : undefined);
    if (raw === undefined) return fallback();
    const problem = (text: string): Value => {
      this.problems.push(`${setting.name} ${text}, got "${raw}"`);
      return fallback();
    };
    switch (setting.type) {
      case 'integer': {
        const parsed = /^\d+$/.test(raw) ? Number(raw) : NaN;
        const fits = Number.isSafeInteger(parsed) && parsed >= setting.min && parsed <= setting.max;
        return fits ? parsed : problem(`must be a whole number from ${setting.min} to ${setting.max}`);
      }
      case 'boolean': {
        const lower = raw.toLowerCase();
        if (['true', '1', 'yes'].includes(lower)) return true;
        if (['false', '0', 'no'].includes(lower)) return false;
        this.problems.push(`${setting.name} must be true or false, got "${lower}"`);
        return fallback();
      }
      case 'string':
        return raw;
      case 'choice':
        return setting.choices.includes(raw) ? raw : problem(`must be one of ${setting.choices.join(', ')}`);
      case 'url': {
        const url = URL.canParse(raw) ? new URL(raw) : undefined;
        return url && ['http:', 'https:'].includes(url.protocol) ? raw : problem('must be an absolute http(s) URL');
      }
      case 'baseUrl': {
        if (!URL.canParse(raw)) return problem('must be an absolute http(s) URL');
        const url = new URL(raw);
        if (!['http:', 'https:'].includes(url.protocol) || url.search || url.hash || url.username) {
          return problem('must be a plain http(s) URL without query, fragment or credentials');
        }
        return url.href.replace(/\/+$/, '');
      }
    }
  }
}
