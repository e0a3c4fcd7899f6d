import type { Log } from './cache/disk-cache.js';
import type { Config } from './config.js';
import { IiifService } from './iiif/service.js';
import { Images } from './image/images.js';
import { jp2UnavailableReason } from './image/jp2/decoder.js';
import { Pyramids } from './image/pyramid/store.js';
import { SharedPyramids } from './image/pyramid/shared.js';
import { configureSharp } from './image/render/sharp-setup.js';
import { Metrics } from './metrics.js';
import { openDerivatives } from './derivatives/open.js';
import { openSource } from './source/open.js';
import { S3Source } from './source/s3.js';
import type { ImageSource } from './source/source.js';

/** Everything a process serves images with, made once from the configuration. */
export interface Runtime {
  config: Config;
  metrics: Metrics;
  /** Where the source and the caches log outside requests (cache degraded, S3 failing). */
  log: Log;
  source: ImageSource;
  /** Where pyramids made on first touch are kept; undefined when IIIF_PYRAMID_THRESHOLD_PIXELS is 0. */
  pyramids: Pyramids | undefined;
  /** The fleet's derivative store in front of `pyramids`, when IIIF_DERIVATIVE_PREFIX is set (S3 source). */
  shared: SharedPyramids | undefined;
  images: Images;
  service: IiifService;
  /** Releases what the runtime holds open (files kept for tile reads) and lets the source finish its cache writes. */
  close(): Promise<void>;
}

export interface RuntimeOptions {
  /** Defaults to a logger that drops everything (command-line tools print their own results). */
  log?: Log;
  /** Replaces the source IIIF_SOURCE names (tests: a source with fewer capabilities). */
  source?: ImageSource;
}

const SILENT: Log = { warn: () => undefined, info: () => undefined };

/**
 * The one place the runtime is wired: the server, the command-line tools and the tests all
 * start here, so they serve the same images the same way.
 */
export async function createRuntime(config: Config, options: RuntimeOptions = {}): Promise<Runtime> {
  configureSharp(config);
  const log = options.log ?? SILENT;
  // Said once per process: every other format is served, and JPEG 2000 requests get a 501.
  const jp2Missing = jp2UnavailableReason();
  if (jp2Missing) log.warn({}, jp2Missing);
  const metrics = new Metrics();
  const source = options.source ?? (await openSource(config, metrics, log));
  const pyramids = config.pyramids.thresholdPixels > 0 ? await Pyramids.open(config.pyramids, metrics, log) : undefined;
  const shared = pyramids && source instanceof S3Source ? sharedPyramids(config, metrics, log, source, pyramids) : undefined;
  if (config.derivatives && !pyramids) log.warn({}, 'IIIF_DERIVATIVE_PREFIX is set but IIIF_PYRAMID_THRESHOLD_PIXELS is 0: no pyramids are made, so none are shared');
  const images = new Images(source, config, metrics, pyramids, shared);
  const service = new IiifService(images, { cacheMaxAge: config.cacheMaxAge, infoDocuments: config.metadataCacheEntries });
  return { config, metrics, log, source, pyramids, shared, images, service, close: () => images.close() };
}

/** Pyramids shared through the fleet's derivative store, when IIIF_DERIVATIVE_PREFIX is set; over the source's S3 client and block cache. */
function sharedPyramids(config: Config, metrics: Metrics, log: Log, source: S3Source, local: Pyramids): SharedPyramids | undefined {
  const derivatives = openDerivatives(config, metrics, { client: source.requests.client });
  if (!derivatives) return undefined;
  const prefix = config.s3!.prefix;
  return new SharedPyramids({
    fleet: derivatives.fleet,
    store: derivatives.store,
    local,
    sourceKey: (identifier) => prefix + identifier,
    open: (derivative) => source.fileOf({ bucket: derivative.bucket, key: derivative.pyramidKey, etag: derivative.pyramidEtag, size: derivative.pyramidSize }),
    metrics,
    log,
  });
}
