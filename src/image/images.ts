import { access } from 'node:fs/promises';
import sharp from 'sharp';
import { ResultCache, type CachedResult } from '../cache/result-cache.js';
import type { Config } from '../config.js';
import { renderTooLarge } from '../errors.js';
import { buildInfo, tileLayout } from '../iiif/info.js';
import { planRender, type RenderPlan } from '../iiif/plan.js';
import type { ApiVersion, ImageRequest } from '../iiif/request.js';
import type { Metrics } from '../metrics.js';
import { sourceInput, type ImageSource, type SourceRef } from '../source/source.js';
import { Admission, type Lane } from './admission.js';
import { MetadataReader, type ImageMetadata } from './metadata.js';
import type { Pyramids } from './pyramids.js';
import { chooseLevel, regionAtLevel, render, renderFrom } from './render.js';
import { cropJpegCorner } from './jpeg-crop.js';
import { locateTile, sendableAsStored } from './stored-tiles.js';
import { TileReader } from './tile-reader.js';

export interface ResolvedImage {
  source: SourceRef;
  metadata: ImageMetadata;
}

export interface ImagePlan extends RenderPlan {
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
  private readonly metadata: MetadataReader;
  private readonly results: ResultCache;
  private readonly admission: Admission;
  private readonly tiles = new TileReader(64);

  constructor(
    private readonly source: ImageSource,
    private readonly config: Config,
    private readonly metrics: Metrics,
    private readonly pyramids?: Pyramids,
  ) {
    this.results = new ResultCache(config.resultCacheBytes, config.resultCacheMaxItemBytes, metrics);
    this.admission = new Admission(
      {
        cheap: { concurrency: config.renderConcurrency, queue: config.renderQueue },
        expensive: { concurrency: config.largeRenderConcurrency, queue: config.largeRenderQueue },
      },
      config.queueTimeoutMs,
      metrics,
    );
    // Conversions are the most expensive work there is: they queue in the expensive lane.
    const schedule = <T>(work: () => Promise<T>) => this.admission.run('expensive', work);
    this.metadata = new MetadataReader(config.maxInputPixels, config.metadataCacheEntries, pyramids && { store: pyramids, schedule });
  }

  /** The image's source, its metadata, and what renders read: the source file or its pyramid. */
  async resolve(identifier: string): Promise<ResolvedImage> {
    const source = await this.source.resolve(identifier);
    return this.withPresentFiles({ source, metadata: undefined }, async (image) => image);
  }

  /** The image information document (info.json) for an image published at `id`. */
  info(version: ApiVersion, id: string, image: ResolvedImage): Record<string, unknown> {
    const { tileSize, limits } = this.config;
    return buildInfo[version]({ id, image: image.metadata, layout: tileLayout(image.metadata, tileSize, limits), limits });
  }

  /** Plans a render and decides its lane; refuses (413) what could never fit the memory budget. */
  plan(version: ApiVersion, request: ImageRequest, image: ResolvedImage): ImagePlan {
    const plan = planRender(version, request, image.metadata, this.config.limits);
    const decoded = regionAtLevel(plan.region, image.metadata, chooseLevel(image.metadata, plan));
    const outputPixels = plan.width * plan.height;
    // RGBA bytes of the decoded region plus the output (twice when an arbitrary rotation
    // makes an enlarged copy): a deliberately simple upper bound, documented with the setting.
    const estimate = 4 * (decoded.width * decoded.height + outputPixels * (plan.degrees % 90 === 0 ? 1 : 2));
    if (estimate > this.config.renderMemoryBytes) {
      throw renderTooLarge(
        `this request needs about ${Math.ceil(estimate / 2 ** 20)} MiB to render, more than the ` +
          `${Math.floor(this.config.renderMemoryBytes / 2 ** 20)} MiB allowed; ask for a smaller region or size`,
      );
    }
    return {
      ...plan,
      lane: outputPixels > this.config.largeRenderPixels ? 'expensive' : 'cheap',
      resultKey: `${image.source.identifier}\u0000${image.source.version}\u0000${plan.canonical}`,
    };
  }

  render(image: ResolvedImage, plan: ImagePlan): Promise<RenderOutcome> {
    return this.results.get(plan.resultKey, () => this.withPresentFiles(image, (present) => this.produce(present.source, present.metadata, plan)));
  }

  /**
   * The bytes, cheapest way first: a stored tile as it is, or cut without decoding; one stored
   * tile decoded; the file through libvips. The first two are a file read and some bit
   * shuffling on this thread, so they skip the render lanes.
   */
  private async produce(source: SourceRef, metadata: ImageMetadata, plan: ImagePlan): Promise<CachedResult> {
    const level = chooseLevel(metadata, plan);
    const spot = locateTile(plan, metadata, level, metadata.tiffPages?.[level.page]);
    const readTile = () => this.tiles.read(source.path, source.version, spot!.page, spot!.index);
    let stored: Buffer | undefined;
    if (spot?.corner && sendableAsStored(plan)) {
      stored = await readTile();
      if (spot.exact) return { data: stored, level: level.page, method: 'passthrough' };
      const cut = cropJpegCorner(stored, spot.crop.width, spot.crop.height);
      if (cut) return { data: cut, level: level.page, method: 'cut' };
    }
    return this.admission.run(plan.lane, async () => {
      const done = this.metrics.renderSeconds.startTimer({ format: plan.format });
      try {
        if (spot) return { ...(await renderFrom(sharp(stored ?? (await readTile())), spot.crop, plan, level.page)), method: 'tile' };
        return { ...(await render(sourceInput(source), metadata, plan, this.config.maxInputPixels)), method: 'sharp' };
      } finally {
        done();
      }
    });
  }

  /** Forgets the source's copies, its pyramid, the probed metadata and the rendered results of an identifier. */
  async purge(identifier: string): Promise<void> {
    await this.source.purge?.(identifier);
    await this.pyramids?.forget(identifier);
    this.metadata.forget(identifier);
    this.results.purge(`${identifier}\u0000`);
  }

  /** Closes the files kept open for tile reads (the server is shutting down). */
  close(): void {
    this.tiles.clear();
  }

  /** Probes (or recalls) a source version; renders then read its pyramid when it has one. */
  private async prepare(source: SourceRef): Promise<ResolvedImage> {
    const { pyramidPath, metadata } = await this.metadata.read(source);
    return { source: pyramidPath ? { ...source, path: pyramidPath, bytes: undefined } : source, metadata };
  }

  /**
   * Runs `use` on a prepared image whose files are present. A cached copy (source or pyramid)
   * can be evicted between resolving and opening it (see DiskCache); then the identifier is
   * prepared once more, which fetches or builds it again, rather than failing the request.
   */
  private async withPresentFiles<T>(image: { source: SourceRef; metadata: ImageMetadata | undefined }, use: (image: ResolvedImage) => Promise<T>): Promise<T> {
    let prepared: ResolvedImage | undefined;
    try {
      prepared = image.metadata ? (image as ResolvedImage) : await this.prepare(image.source);
      return await use(prepared);
    } catch (error) {
      const path = prepared?.source.path ?? image.source.path;
      if (image.source.bytes || (await exists(path))) throw error;
      this.metadata.forget(image.source.identifier);
      const again = await this.prepare(await this.source.resolve(image.source.identifier));
      if (again.source.version !== image.source.version) throw error;
      return use(again);
    }
  }
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );
