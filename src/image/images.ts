import { access } from 'node:fs/promises';
import sharp from 'sharp';
import { ResultCache, type CachedResult } from '../cache/result-cache.js';
import type { Config } from '../config.js';
import { renderTooLarge } from '../errors.js';
import { planRender, type RenderPlan } from '../iiif/plan.js';
import type { ApiVersion, ImageRequest } from '../iiif/request.js';
import type { Metrics } from '../metrics.js';
import { sourceInput, type ImageSource, type SourceRef } from '../source/source.js';
import { Admission, type Lane } from './admission.js';
import { MetadataReader, type ImageMetadata } from './metadata.js';
import { chooseLevel, regionAtLevel, render, renderFrom } from './render.js';
import { locateTile, sendableAsStored } from './stored-tiles.js';
import { TileReader } from './tile-reader.js';

export interface ResolvedImage {
  source: SourceRef;
  metadata: ImageMetadata;
}

export interface ImagePlan extends RenderPlan {
  lane: Lane;
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
  ) {
    this.metadata = new MetadataReader(config.maxInputPixels, config.metadataCacheEntries);
    this.results = new ResultCache(config.resultCacheBytes, config.resultCacheMaxItemBytes, metrics);
    this.admission = new Admission(
      {
        cheap: { concurrency: config.renderConcurrency, queue: config.renderQueue },
        expensive: { concurrency: config.largeRenderConcurrency, queue: config.largeRenderQueue },
      },
      config.queueTimeoutMs,
      metrics,
    );
  }

  async resolve(identifier: string): Promise<ResolvedImage> {
    const source = await this.source.resolve(identifier);
    return this.withPresentFile(source, async (present) => ({ source: present, metadata: await this.metadata.read(present) }));
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
    return { ...plan, lane: outputPixels > this.config.largeRenderPixels ? 'expensive' : 'cheap' };
  }

  render(image: ResolvedImage, plan: ImagePlan): Promise<RenderOutcome> {
    const key = `${image.source.identifier}\u0000${image.source.version}\u0000${plan.canonical}`;
    return this.results.get(key, () => this.withPresentFile(image.source, (source) => this.produce(source, image.metadata, plan)));
  }

  /** The bytes, cheapest way first: a stored tile as it is, one stored tile decoded, the file through libvips. */
  private async produce(source: SourceRef, metadata: ImageMetadata, plan: ImagePlan): Promise<CachedResult> {
    const level = chooseLevel(metadata, plan);
    const spot = locateTile(plan, metadata, level, metadata.tiffPages?.[level.page]);
    const storedTile = () => this.tiles.read(source.path, source.version, spot!.page, spot!.index);
    if (spot?.exact && sendableAsStored(plan)) {
      return { data: await storedTile(), level: level.page, method: 'passthrough' };
    }
    return this.admission.run(plan.lane, async () => {
      const done = this.metrics.renderSeconds.startTimer({ format: plan.format });
      try {
        if (spot) return { ...(await renderFrom(sharp(await storedTile()), spot.crop, plan, level.page)), method: 'tile' };
        return { ...(await render(sourceInput(source), metadata, plan, this.config.maxInputPixels)), method: 'sharp' };
      } finally {
        done();
      }
    });
  }

  /** Forgets the source's copies, the probed metadata and the rendered results of an identifier. */
  async purge(identifier: string): Promise<void> {
    await this.source.purge?.(identifier);
    this.metadata.forget(identifier);
    this.results.purge(`${identifier}\u0000`);
  }

  /**
   * Runs `read` on the source's file. A cached copy can be evicted between resolving and
   * opening it (see DiskCache); then the source is resolved once more, which fetches it again,
   * rather than failing the request.
   */
  private async withPresentFile<T>(source: SourceRef, read: (source: SourceRef) => Promise<T>): Promise<T> {
    try {
      return await read(source);
    } catch (error) {
      if (source.bytes || (await exists(source.path))) throw error;
      const again = await this.source.resolve(source.identifier);
      if (again.version !== source.version) throw error;
      return read(again);
    }
  }
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );
