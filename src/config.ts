import { defaultSampleFolder } from './paths.js';
import type { OutputLimits } from './iiif/request.js';

/** Everything the server reads from its environment, typed and validated once at start. */
export interface Config {
  port: number;
  host: string;
  logLevel: string;
  fileRoot: string;
  /** Public base URL (scheme, host, optional path prefix) used for `id`; no trailing slash. */
  baseUrl: string | undefined;
  trustProxy: boolean;
  limits: OutputLimits;
  maxInputPixels: number;
  tileSize: number;
  /** max-age, in seconds, for image and info.json responses. */
  cacheMaxAge: number;
  /** How many probed images (dimensions, pyramid levels) to keep in memory. */
  metadataCacheEntries: number;
  /** After a stop signal: how long to keep serving while /health fails, in ms. */
  drainDelayMs: number;
  /** After a stop signal: the most time until the process exits, in ms. */
  drainTimeoutMs: number;
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
  const config: Config = {
    port: read.integer('PORT', 3000, 0, 65_535),
    host: read.string('HOST', '0.0.0.0'),
    logLevel: read.oneOf('LOG_LEVEL', 'info', LOG_LEVELS),
    fileRoot: read.string('IIIF_FILE_ROOT', defaultSampleFolder()),
    baseUrl: read.baseUrl('IIIF_BASE_URL'),
    trustProxy: read.boolean('IIIF_TRUST_PROXY', false),
    limits: {
      maxWidth,
      // The spec: when only maxWidth is given, clients infer maxHeight = maxWidth.
      maxHeight: read.integer('IIIF_MAX_HEIGHT', maxWidth, 1, 1_000_000),
      maxArea: read.integer('IIIF_MAX_AREA', 25_000_000, 1, 1_000_000_000_000),
    },
    maxInputPixels: read.integer('IIIF_MAX_INPUT_PIXELS', 268_402_689, 1, 10_000_000_000),
    tileSize: read.integer('IIIF_TILE_SIZE', 256, 64, 4096),
    cacheMaxAge: read.integer('IIIF_CACHE_MAX_AGE', 86_400, 0, 31_536_000),
    metadataCacheEntries: read.integer('IIIF_METADATA_CACHE_ENTRIES', 10_000, 1, 10_000_000),
    // Defaults: HAProxy (inter 1s fall 2) and an ALB notice a failing /health within 5 s, and
    // the whole drain ends well before ECS's 30 s stopTimeout sends SIGKILL.
    drainDelayMs: read.integer('IIIF_DRAIN_DELAY_MS', 5_000, 0, 600_000),
    drainTimeoutMs: read.integer('IIIF_DRAIN_TIMEOUT_MS', 20_000, 1, 600_000),
  };
  if (config.tileSize > Math.min(config.limits.maxWidth, config.limits.maxHeight)) {
    problems.push(`IIIF_TILE_SIZE (${config.tileSize}) must not exceed IIIF_MAX_WIDTH and IIIF_MAX_HEIGHT`);
  }
  if (config.tileSize * config.tileSize > config.limits.maxArea) {
    problems.push(`IIIF_TILE_SIZE (${config.tileSize}) squared must not exceed IIIF_MAX_AREA`);
  }
  if (config.drainDelayMs >= config.drainTimeoutMs) {
    problems.push(`IIIF_DRAIN_DELAY_MS (${config.drainDelayMs}) must be less than IIIF_DRAIN_TIMEOUT_MS (${config.drainTimeoutMs})`);
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
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
    const value = this.raw(name);
    if (value === undefined) return fallback;
    const parsed = /^\d+$/.test(value) ? Number(value) : NaN;
    if (!Number.isSafeInteger(parsed) || parsed < min || parsed > max) {
      this.problems.push(`${name} must be a whole number from ${min} to ${max}, got "${value}"`);
      return fallback;
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
