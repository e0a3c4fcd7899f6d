import { access } from 'node:fs/promises';
import sharp from 'sharp';
import { identifierPrefix, requestKey } from '../cache/keys.js';
import { ResultCache, type CachedResult } from '../cache/result-cache.js';
import type { Config } from '../config.js';
import { IiifError } from '../errors.js';
import { buildInfo, tileLayout } from '../iiif/info.js';
import { planRender, type RenderPlan } from '../iiif/plan.js';
import type { ApiVersion, ImageRequest } from '../iiif/request.js';
import type { Metrics } from '../metrics.js';
import { sourceInput, type ImageSource, type SourceRef } from '../source/source.js';
import { Admission, type Lane } from './admission.js';
import { laneFor, renderCost } from './cost.js';
import { levelRead, type LevelRead } from './levels.js';
import type { ImageMetadata } from './metadata/types.js';
import { Preparation } from './prepare.js';
import type { Pyramids } from './pyramid/store.js';
import { render, renderFrom } from './render/render.js';
import { cropJpegCorner } from './tiles/jpeg-crop.js';
import { locateTile, sendableAsStored } from './tiles/locate.js';
import { TileReader } from './tiles/tile-reader.js';

export interface ResolvedImage {
  /** The source image: identifier, version and dates (what ETags and cache keys use). */
  source: SourceRef;
  /** What renders read: the source's own file (or bytes), or the pyramid built from it. */
  input: string | Buffer;
  /** Of `input`: sizes, stored levels, tile layout. */
  metadata: ImageMetadata;
}

export interface ImagePlan extends RenderPlan {
  /** The stored level that fits and the region on it, chosen once here. */
  read: LevelRead;
  lane: Lane;
  /** Source version + canonical request: the result-cache key, built once per plan. */
  resultKey: string;
}

export type RenderOutcome = CachedResult & { cache: 'hit' | 'miss' | 'shared' };

/**
 * The image pipeline behind the routes: identifier → source → metadata → plan → bytes. Bytes
 * come, cheapest first, from the result cache, from a stored JPEG tile sent as it is, or from
 * one sharp pipeline admitted through its lane.
 */
export class Images {
  private readonly preparation: Preparation;
  private readonly results: ResultCache;
  private readonly admission: Admission;
  private readonly tiles: TileReader;
  private readonly retryAfter: Record<Lane, number>;

  constructor(
    private readonly source: ImageSource,
    private readonly config: Config,
    private readonly metrics: Metrics,
    pyramids?: Pyramids,
  ) {
    this.results = new ResultCache(config.resultCacheBytes, config.resultCacheMaxItemBytes, metrics);
    this.tiles = new TileReader(config.openTileFiles);
    this.retryAfter = { cheap: config.renderRetryAfterSeconds, expensive: config.largeRenderRetryAfterSeconds };
    this.admission = new Admission(
      {
        cheap: { concurrency: config.renderConcurrency, queue: config.renderQueue, retryAfterSeconds: config.renderRetryAfterSeconds },
        expensive: { concurrency: config.largeRenderConcurrency, queue: config.largeRenderQueue, retryAfterSeconds: config.largeRenderRetryAfterSeconds },
      },
      config.queueTimeoutMs,
      metrics,
    );
    // Conversions are the most expensive work there is: they queue in the expensive lane.
    const schedule = <T>(work: () => Promise<T>) => this.admission.run('expensive', work);
    this.preparation = new Preparation({
      maxInputPixels: config.maxInputPixels,
      maxJpegScans: config.maxJpegScans,
      maxEntries: config.metadataCacheEntries,
      pyramids: pyramids && { store: pyramids, schedule },
      retryAfterSeconds: config.conversionRetryAfterSeconds,
    });
  }

  /** The image's source, its metadata, and what renders read: the source file or its pyramid. */
  async resolve(identifier: string): Promise<ResolvedImage> {
    return this.whilePresent(await this.source.resolve(identifier), async (image) => image);
  }

  /** The image information document (info.json) for an image published at `id`. */
  info(version: ApiVersion, id: string, image: ResolvedImage): Record<string, unknown> {
    const { tileSize, limits } = this.config;
    return buildInfo[version]({ id, image: image.metadata, layout: tileLayout(image.metadata, tileSize, limits), limits });
  }

  /** Plans a render and decides its lane; refuses (413) what could never fit its memory or time budget. */
  plan(version: ApiVersion, request: ImageRequest, image: ResolvedImage): ImagePlan {
    const plan = planRender(version, request, image.metadata, this.config.limits);
    const read = levelRead(image.metadata, plan);
    return {
      ...plan,
      read,
      lane: laneFor(renderCost(plan, read), plan.format, this.config),
      resultKey: requestKey(image.source.identifier, image.source.version, plan.canonical),
    };
  }

  render(image: ResolvedImage, plan: ImagePlan): Promise<RenderOutcome> {
    return this.results.get(plan.resultKey, () => this.whilePresent(image.source, (present) => this.produce(present, plan)));
  }

  /**
   * The bytes, cheapest way first: a stored tile as it is, or cut without decoding; one stored
   * tile decoded; the file through libvips. The first two are a file read and some bit
   * shuffling on this thread, so they skip the render lanes.
   */
  private async produce(image: ResolvedImage, plan: ImagePlan): Promise<CachedResult> {
    const { level } = plan.read;
    const spot = typeof image.input === 'string' ? locateTile(plan, plan.read, image.metadata.tiffPages?.[level.page]) : undefined;
    const readTile = () => this.tiles.read(image.input as string, image.source.version, spot!.page, spot!.index);
    let stored: Buffer | undefined;
    if (spot?.corner && sendableAsStored(plan)) {
      stored = await readTile();
      if (spot.exact) return { data: stored, level: level.page, method: 'passthrough' };
      const cut = cropJpegCorner(stored, spot.crop.width, spot.crop.height);
      if (cut) return { data: cut, level: level.page, method: 'cut' };
    }
    const { encoding } = this.config;
    const deadline = { seconds: this.config.renderTimeoutSeconds, retryAfterSeconds: this.retryAfter[plan.lane] };
    return this.admission.run(plan.lane, async () => {
      const done = this.metrics.renderSeconds.startTimer({ format: plan.format });
      try {
        if (spot) return { ...(await renderFrom(sharp(stored ?? (await readTile())), spot.crop, plan, level.page, encoding, deadline)), method: 'tile' };
        return { ...(await render(image.input, image.metadata.autoOrient, plan.read, plan, this.config.maxInputPixels, encoding, deadline)), method: 'sharp' };
      } finally {
        done();
      }
    });
  }

  /** Forgets the source's copies, its pyramid, the probed metadata and the rendered results of an identifier. */
  async purge(identifier: string): Promise<void> {
    await this.source.purge?.(identifier);
    await this.preparation.purge(identifier);
    this.results.purge(identifierPrefix(identifier));
  }

  /** Closes the files kept open for tile reads (the server is shutting down). */
  close(): void {
    this.tiles.clear();
  }

  /**
   * Prepares a source version (probe, and pyramid on first touch) and runs `use` on it while
   * its files are present. A cached copy (source or pyramid) can be evicted between preparing
   * and reading it (see DiskCache); then the identifier is resolved and prepared once more,
   * which fetches or builds it again, rather than failing the request.
   */
  private async whilePresent<T>(source: SourceRef, use: (image: ResolvedImage) => Promise<T>): Promise<T> {
    let image: ResolvedImage | undefined;
    try {
      image = await this.prepare(source);
      return await use(image);
    } catch (error) {
      const input = image?.input ?? sourceInput(source);
      if (!mayBeMissingFile(error) || typeof input !== 'string' || (await exists(input))) throw error;
      this.preparation.forget(source.identifier);
      const again = await this.source.resolve(source.identifier);
      if (again.version !== source.version) throw error;
      return use(await this.prepare(again));
    }
  }

  private async prepare(source: SourceRef): Promise<ResolvedImage> {
    const { pyramidPath, metadata } = await this.preparation.get(source);
    return { source, input: pyramidPath ?? sourceInput(source), metadata };
  }
}

/** Errors a vanished file shows up as: the open failed, or the decoder found nothing to read. */
const mayBeMissingFile = (error: unknown): boolean =>
  (error instanceof IiifError && error.code === 'IIIF_UNDECODABLE_SOURCE') || (error as NodeJS.ErrnoException).code === 'ENOENT';

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );
