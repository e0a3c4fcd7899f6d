import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { ServerError } from '../errors.js';
import { defaultSampleFolder } from '../paths.js';

/** Reads other settings, for defaults that follow them (IIIF_MAX_HEIGHT follows IIIF_MAX_WIDTH). */
export interface SettingLookup {
  integer(name: string): number;
  optionalUrl(name: string): string | undefined;
}

type Default<T> = T | ((read: SettingLookup) => T);

interface Common {
  /** The environment variable. */
  name: string;
  /** The default as README shows it (Markdown). */
  defaultDoc: string;
  /** What it does, as README shows it (Markdown). */
  doc: string;
  /** Read only when IIIF_SOURCE is s3. */
  s3?: true;
}

/** One setting: its variable, type, default, allowed values and documentation. */
export type Setting = Common &
  (
    | { type: 'integer'; default?: Default<number>; min: number; max: number }
    | { type: 'boolean'; default: Default<boolean> }
    | { type: 'string'; default: Default<string> }
    | { type: 'choice'; default: string; choices: string[] }
    /** An absolute http(s) URL. */
    | { type: 'url' }
    /** A public root URL: http(s), no query, fragment or credentials; trailing slashes dropped. */
    | { type: 'baseUrl' }
  );

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/**
 * Every setting the server reads from its environment, in README order. loadConfig validates
 * against it, the command line makes a flag of each, and a test keeps README's table equal to
 * it; adding a setting here is all it takes.
 */
export const SETTINGS: readonly Setting[] = [
  {
    name: 'PORT',
    type: 'integer',
    default: 3000,
    min: 0,
    max: 65_535,
    defaultDoc: "`3000`",
    doc: "TCP port; `0` picks a free port and logs the real one",
  },
  {
    name: 'HOST',
    type: 'string',
    default: '0.0.0.0',
    defaultDoc: "`0.0.0.0`",
    doc: "address to listen on",
  },
  {
    name: 'IIIF_FILE_ROOT',
    type: 'string',
    default: () => defaultSampleFolder(),
    defaultDoc: "`samples/` in the project",
    doc: "folder the identifiers are resolved in; must exist",
  },
  {
    name: 'IIIF_BASE_URL',
    type: 'baseUrl',
    defaultDoc: "unset",
    doc: "public root URL (e.g. `https://images.example.org` or with a path prefix) used for `id`, `Location` and canonical links instead of the request's scheme and host",
  },
  {
    name: 'IIIF_TRUST_PROXY',
    type: 'boolean',
    default: false,
    defaultDoc: "`false`",
    doc: "trust `X-Forwarded-Proto` / `X-Forwarded-Host` (and `X-Forwarded-For`) from the proxy in front",
  },
  {
    name: 'IIIF_MAX_WIDTH',
    type: 'integer',
    default: 10_000,
    min: 1,
    max: 1_000_000,
    defaultDoc: "`10000`",
    doc: "largest output width, advertised as `maxWidth`",
  },
  {
    name: 'IIIF_MAX_HEIGHT',
    type: 'integer',
    default: (read) => read.integer('IIIF_MAX_WIDTH'),
    min: 1,
    max: 1_000_000,
    defaultDoc: "`IIIF_MAX_WIDTH`",
    doc: "largest output height, advertised as `maxHeight`",
  },
  {
    name: 'IIIF_MAX_AREA',
    type: 'integer',
    default: 25_000_000,
    min: 1,
    max: 1_000_000_000_000,
    defaultDoc: "`25000000`",
    doc: "largest output area in pixels, advertised as `maxArea`",
  },
  {
    name: 'IIIF_MAX_INPUT_PIXELS',
    type: 'integer',
    default: 268_402_689,
    min: 1,
    max: 10_000_000_000,
    defaultDoc: "`268402689`",
    doc: "largest source image (width × height) the server will decode",
  },
  {
    name: 'IIIF_TILE_SIZE',
    type: 'integer',
    default: 256,
    min: 64,
    max: 4096,
    defaultDoc: "`256`",
    doc: "tile width and height advertised in `info.json` (64–4096, within the limits)",
  },
  {
    name: 'IIIF_CACHE_MAX_AGE',
    type: 'integer',
    default: 86_400,
    min: 0,
    max: 31_536_000,
    defaultDoc: "`86400`",
    doc: "`Cache-Control: max-age` in seconds for images and `info.json`",
  },
  {
    name: 'IIIF_METADATA_CACHE_ENTRIES',
    type: 'integer',
    default: 10_000,
    min: 1,
    max: 10_000_000,
    defaultDoc: "`10000`",
    doc: "how many images' probed dimensions to keep in memory (per source version)",
  },
  {
    name: 'IIIF_SOURCE',
    type: 'choice',
    default: 'folder',
    choices: ['folder', 's3'],
    defaultDoc: "`folder`",
    doc: "where images come from: `folder` (`IIIF_FILE_ROOT`) or `s3` (the settings below)",
  },
  {
    name: 'IIIF_S3_BUCKET',
    type: 'string',
    default: '',
    s3: true,
    defaultDoc: "none; required with `s3`",
    doc: "the bucket holding the images",
  },
  {
    name: 'IIIF_S3_PREFIX',
    type: 'string',
    default: '',
    s3: true,
    defaultDoc: "empty",
    doc: "prepended to the identifier to make the key: key = prefix + identifier",
  },
  {
    name: 'IIIF_S3_ENDPOINT',
    type: 'url',
    s3: true,
    defaultDoc: "AWS",
    doc: "URL of an S3-compatible store (MinIO, Ceph, s3rver)",
  },
  {
    name: 'IIIF_S3_FORCE_PATH_STYLE',
    type: 'boolean',
    default: (read) => read.optionalUrl('IIIF_S3_ENDPOINT') !== undefined,
    s3: true,
    defaultDoc: "`true` when an endpoint is set, else `false`",
    doc: "path-style addressing (`endpoint/bucket/key`) instead of bucket host names",
  },
  {
    name: 'IIIF_S3_REGION',
    type: 'string',
    default: '',
    s3: true,
    defaultDoc: "the AWS chain (`AWS_REGION`, set by ECS)",
    doc: "region of the bucket",
  },
  {
    name: 'IIIF_S3_TIMEOUT_MS',
    type: 'integer',
    default: 5_000,
    min: 100,
    max: 600_000,
    s3: true,
    defaultDoc: "`5000`",
    doc: "longest wait for a connection or for the next bytes of a response, per attempt",
  },
  {
    name: 'IIIF_S3_DEADLINE_MS',
    type: 'integer',
    default: 20_000,
    min: 100,
    max: 3_600_000,
    s3: true,
    defaultDoc: "`20000`",
    doc: "hard limit for one fetch, every attempt and backoff included; concurrent requests for the image wait no longer",
  },
  {
    name: 'IIIF_S3_MAX_ATTEMPTS',
    type: 'integer',
    default: 3,
    min: 1,
    max: 10,
    s3: true,
    defaultDoc: "`3`",
    doc: "attempts per fetch for retryable failures (timeouts, connection errors, 5xx, throttling, incomplete bodies), with jittered exponential backoff from 100 ms (cap 2 s)",
  },
  {
    name: 'IIIF_S3_REVALIDATE_SECONDS',
    type: 'integer',
    default: 300,
    min: 0,
    max: 31_536_000,
    s3: true,
    defaultDoc: "`300`",
    doc: "how long an object's known version (ETag) is trusted before a conditional GET of its first block asks S3 whether it changed",
  },
  {
    name: 'IIIF_S3_NEGATIVE_TTL_SECONDS',
    type: 'integer',
    default: 30,
    min: 0,
    max: 86_400,
    s3: true,
    defaultDoc: "`30`",
    doc: "how long a missing (or denied) key is answered 404 without asking S3 again; `0` turns this off",
  },
  {
    name: 'IIIF_S3_NEGATIVE_CACHE_ENTRIES',
    type: 'integer',
    default: 10_000,
    min: 1,
    max: 10_000_000,
    s3: true,
    defaultDoc: "`10000`",
    doc: "how many missing keys to remember",
  },
  {
    name: 'IIIF_S3_MEMORY_FALLBACK_MAX_BYTES',
    type: 'integer',
    default: 256 * MiB,
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    s3: true,
    defaultDoc: "`268435456` (256 MiB)",
    doc: "largest object decoded whole (JPEG, PNG, …) fetched into memory while the disk cache cannot be written; larger ones get `503`",
  },
  {
    name: 'IIIF_S3_RETRY_AFTER_SECONDS',
    type: 'integer',
    default: 5,
    min: 1,
    max: 3_600,
    s3: true,
    defaultDoc: "`5`",
    doc: "`Retry-After` on a `503` caused by S3",
  },
  {
    name: 'IIIF_S3_BLOCK_BYTES',
    type: 'integer',
    // About two stored tiles: a tile read fetches little more than the tile.
    default: 64 * 1024,
    min: 4 * 1024,
    max: 8 * MiB,
    s3: true,
    defaultDoc: "`65536` (64 KiB)",
    doc: "objects are read by range in blocks of this size: the unit fetched from S3 and kept on disk. About two stored tiles, so reading a 20–40 KB tile fetches little more than the tile",
  },
  {
    name: 'IIIF_DERIVATIVE_PREFIX',
    type: 'string',
    default: '',
    s3: true,
    defaultDoc: "unset (each container keeps its own pyramids)",
    doc: "key prefix of the fleet's shared derivative store (e.g. `derivatives/`): a pyramid and its image information are made once per source version, at `{prefix}{source key}/{hash of its ETag}/pyramid.tif` and `…/info.json`, and read by every container",
  },
  {
    name: 'IIIF_DERIVATIVE_BUCKET',
    type: 'string',
    default: '',
    s3: true,
    defaultDoc: "`IIIF_S3_BUCKET`",
    doc: "bucket of the derivative store, when it is not the source bucket; needs `IIIF_DERIVATIVE_PREFIX`",
  },
  {
    name: 'IIIF_DERIVATIVE_LEASE_SECONDS',
    type: 'integer',
    default: 120,
    min: 5,
    max: 86_400,
    s3: true,
    defaultDoc: "`120`",
    doc: "how long one container's claim to convert a source version lasts; an expired claim (a converter that crashed) is taken over by another container. Keep it above the slowest conversion plus upload",
  },
  {
    name: 'IIIF_DERIVATIVE_WAIT_MS',
    type: 'integer',
    default: 10_000,
    min: 0,
    max: 600_000,
    s3: true,
    defaultDoc: "`10000`",
    doc: "longest a request waits for another container's conversion of the same source version before it is served from the source directly",
  },
  {
    name: 'IIIF_CACHE_DIR',
    type: 'string',
    default: () => join(tmpdir(), 'iiif-elastic-cache'),
    defaultDoc: "`$TMPDIR/iiif-elastic-cache`",
    doc: "folder for the disk cache of S3 objects (blocks read by range, whole objects of formats decoded whole); created when missing",
  },
  {
    name: 'IIIF_CACHE_MAX_BYTES',
    type: 'integer',
    default: 10 * GiB,
    min: MiB,
    max: Number.MAX_SAFE_INTEGER,
    defaultDoc: "`10737418240` (10 GiB)",
    doc: "bound on the cache folder's real size on disk (allocated blocks); at least 1 MiB, and larger than your largest image",
  },
  {
    name: 'IIIF_ADMIN_TOKEN',
    type: 'string',
    default: '',
    defaultDoc: "unset (no `/admin` routes)",
    doc: "bearer token for `/admin` routes; at least 16 characters",
  },
  {
    name: 'IIIF_SOURCE_RECHECK_MS',
    type: 'integer',
    default: 1000,
    min: 0,
    max: 3_600_000,
    defaultDoc: "`1000`",
    doc: "how long a resolved local file is trusted before it is looked at again (a viewer asks for dozens of tiles at once); `0` checks every request",
  },
  {
    name: 'IIIF_PYRAMID_DIR',
    type: 'string',
    default: () => join(tmpdir(), 'iiif-elastic-pyramids'),
    defaultDoc: "`$TMPDIR/iiif-elastic-pyramids`",
    doc: "folder for pyramids made on first touch; created when missing",
  },
  {
    name: 'IIIF_PYRAMID_CACHE_MAX_BYTES',
    type: 'integer',
    default: 10 * GiB,
    min: MiB,
    max: Number.MAX_SAFE_INTEGER,
    defaultDoc: "`10737418240` (10 GiB)",
    doc: "bound on that folder's real size on disk",
  },
  {
    name: 'IIIF_PYRAMID_THRESHOLD_PIXELS',
    type: 'integer',
    default: 16_000_000,
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    defaultDoc: "`16000000`",
    doc: "single-level images with at least this many pixels are converted to a pyramid on first touch; `0` never converts",
  },
  {
    name: 'IIIF_PYRAMID_QUALITY',
    type: 'integer',
    default: 85,
    min: 1,
    max: 100,
    defaultDoc: "`85`",
    doc: "JPEG quality of pyramid tiles (below 90 libvips stores compact YCbCr tiles)",
  },
  {
    name: 'IIIF_RESULT_CACHE_BYTES',
    type: 'integer',
    default: 128 * MiB,
    min: 0,
    max: 64 * GiB,
    defaultDoc: "`134217728` (128 MiB)",
    doc: "memory for recently served image bytes; `0` turns the result cache off",
  },
  {
    name: 'IIIF_RESULT_CACHE_MAX_ITEM_BYTES',
    type: 'integer',
    default: MiB,
    min: 1,
    max: GiB,
    defaultDoc: "`1048576`",
    doc: "larger results are served but not kept",
  },
  {
    name: 'IIIF_RENDER_CONCURRENCY',
    type: 'integer',
    default: () => availableParallelism() * 2,
    min: 1,
    max: 1024,
    defaultDoc: "2 × cores",
    doc: "renders running at once in the cheap lane (tiles, small images)",
  },
  {
    name: 'IIIF_RENDER_QUEUE',
    type: 'integer',
    default: 256,
    min: 0,
    max: 100_000,
    defaultDoc: "`256`",
    doc: "cheap renders allowed to wait; more get `503` + `Retry-After: 1`",
  },
  {
    name: 'IIIF_LARGE_RENDER_CONCURRENCY',
    type: 'integer',
    default: 1,
    min: 1,
    max: 1024,
    defaultDoc: "`1`",
    doc: "renders (and pyramid conversions) running at once in the expensive lane",
  },
  {
    name: 'IIIF_LARGE_RENDER_QUEUE',
    type: 'integer',
    default: 8,
    min: 0,
    max: 100_000,
    defaultDoc: "`8`",
    doc: "expensive renders allowed to wait; more get `503` + `Retry-After: 5`",
  },
  {
    name: 'IIIF_LARGE_RENDER_PIXELS',
    type: 'integer',
    default: MiB,
    min: 1,
    max: 1_000_000_000_000,
    defaultDoc: "`1048576`",
    doc: "output pixels above which a render is expensive",
  },
  {
    name: 'IIIF_QUEUE_TIMEOUT_MS',
    type: 'integer',
    default: 10_000,
    min: 1,
    max: 600_000,
    defaultDoc: "`10000`",
    doc: "longest wait for a render slot before `503`",
  },
  {
    name: 'IIIF_RENDER_RETRY_AFTER_SECONDS',
    type: 'integer',
    default: 1,
    min: 1,
    max: 3_600,
    defaultDoc: "`1`",
    doc: "`Retry-After` on a `503` from the cheap lane (tiles free up within milliseconds)",
  },
  {
    name: 'IIIF_LARGE_RENDER_RETRY_AFTER_SECONDS',
    type: 'integer',
    default: 5,
    min: 1,
    max: 3_600,
    defaultDoc: "`5`",
    doc: "`Retry-After` on a `503` from the expensive lane",
  },
  {
    name: 'IIIF_JP2_MEMORY_BYTES',
    type: 'integer',
    default: 256 * MiB,
    min: 0,
    max: 64 * GiB,
    defaultDoc: "`268435456` (256 MiB)",
    doc: "memory for the JPEG 2000 files being decoded (OpenJPEG decodes from memory): the most recently used are kept, so a viewer's tiles do not read the file again each time",
  },
  {
    name: 'IIIF_RENDER_MEMORY_BYTES',
    type: 'integer',
    default: GiB,
    min: MiB,
    max: 1024 * GiB,
    defaultDoc: "`1073741824` (1 GiB)",
    doc: "estimated memory one render may use: 4 bytes × (decoded region at the chosen level + output, output twice for non-right-angle rotations); more is refused at once with `413`",
  },
  {
    name: 'IIIF_OPEN_TILE_FILES',
    type: 'integer',
    default: 64,
    min: 1,
    max: 10_000,
    defaultDoc: "`64`",
    doc: "source files kept open for stored-tile reads (a viewer asks for dozens of tiles of one image)",
  },
  {
    name: 'IIIF_JPEG_QUALITY',
    type: 'integer',
    default: 85,
    min: 1,
    max: 100,
    defaultDoc: "`85`",
    doc: "quality of rendered `jpg` output (stored tiles sent as they are keep theirs)",
  },
  {
    name: 'IIIF_WEBP_QUALITY',
    type: 'integer',
    default: 80,
    min: 1,
    max: 100,
    defaultDoc: "`80`",
    doc: "quality of rendered `webp` output",
  },
  {
    name: 'IIIF_AVIF_QUALITY',
    type: 'integer',
    default: 50,
    min: 1,
    max: 100,
    defaultDoc: "`50`",
    doc: "quality of rendered `avif` output",
  },
  {
    name: 'IIIF_AVIF_EFFORT',
    type: 'integer',
    default: 2,
    min: 0,
    max: 9,
    defaultDoc: "`2`",
    doc: "CPU effort of the `avif` encoder, 0 (fastest) to 9",
  },
  {
    name: 'IIIF_PNG_COMPRESSION',
    type: 'integer',
    default: 6,
    min: 0,
    max: 9,
    defaultDoc: "`6`",
    doc: "zlib level of rendered `png` output, 0–9",
  },
  {
    name: 'IIIF_SHARP_CONCURRENCY',
    type: 'integer',
    default: 1,
    min: 0,
    max: 1024,
    defaultDoc: "`1`",
    doc: "libvips threads per sharp pipeline (`sharp.concurrency`); parallelism comes from concurrent requests",
  },
  {
    name: 'IIIF_SHARP_CACHE_MB',
    type: 'integer',
    default: 64,
    min: 0,
    max: 65_536,
    defaultDoc: "`64`",
    doc: "libvips operation cache (`sharp.cache`), never caching open files, so a replaced file is read afresh",
  },
  {
    name: 'IIIF_ACCESS_LOG',
    type: 'boolean',
    default: true,
    defaultDoc: "`true`",
    doc: "one log line per request; turn off when the load balancer keeps access logs",
  },
  {
    name: 'IIIF_METRICS',
    type: 'choice',
    default: 'on',
    choices: ['on', 'off'],
    defaultDoc: "`on`",
    doc: "`off` removes `/metrics` entirely",
  },
  {
    name: 'IIIF_METRICS_PORT',
    type: 'integer',
    min: 0,
    max: 65_535,
    defaultDoc: "unset",
    doc: "serve `/metrics`, and the `/admin` routes, only on this port (a second listener on `HOST`; the main port answers `404`), so scrapes and operator calls stay off the public port; must differ from `PORT`",
  },
  {
    name: 'IIIF_LIST_LIMIT',
    type: 'integer',
    default: 1000,
    min: 1,
    max: 100_000,
    defaultDoc: "`1000`",
    doc: "most images the viewer's index page `/` lists",
  },
  {
    name: 'IIIF_DRAIN_DELAY_MS',
    type: 'integer',
    default: 5_000,
    min: 0,
    max: 600_000,
    defaultDoc: "`5000`",
    doc: "after SIGTERM/SIGINT, how long to keep serving while `/health` answers 503, so the load balancer stops routing here first (HAProxy `inter 1s fall 2` needs ≈ 2–3 s, an ALB `interval × unhealthy threshold`)",
  },
  {
    name: 'IIIF_DRAIN_TIMEOUT_MS',
    type: 'integer',
    default: 20_000,
    min: 1,
    max: 600_000,
    defaultDoc: "`20000`",
    doc: "after SIGTERM/SIGINT, the most time until the process exits; keep it under the orchestrator's stop timeout (ECS `stopTimeout` 30 s); must exceed the delay",
  },
  {
    name: 'LOG_LEVEL',
    type: 'choice',
    default: 'info',
    choices: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'],
    defaultDoc: "`info`",
    doc: "`fatal`, `error`, `warn`, `info`, `debug`, `trace` or `silent`",
  },
];

const BY_NAME = new Map(SETTINGS.map((setting) => [setting.name, setting]));

/** The table entry for a variable; a name missing from the table is a programming error. */
export function settingNamed(name: string): Setting {
  const setting = BY_NAME.get(name);
  if (!setting) throw new ServerError('SETTING_UNKNOWN', `no setting named ${name}`);
  return setting;
}

/** README's settings table, made from SETTINGS (a test checks README holds exactly this). */
export function settingsTable(): string {
  const rows = SETTINGS.map((setting) => `| \`${setting.name}\` | ${setting.defaultDoc} | ${setting.doc} |`);
  return ['| variable | default | meaning |', '|---|---|---|', ...rows].join('\n');
}
