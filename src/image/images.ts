import { ResultCache, type CachedResult } from '../cache/result-cache.js';
import type { Config } from '../config.js';
import { renderTooLarge } from '../errors.js';
import { planRender, type RenderPlan } from '../iiif/plan.js';
import type { ApiVersion, ImageRequest } from '../iiif/request.js';
import type { Metrics } from '../metrics.js';
import type { ImageSource, SourceRef } from '../source/source.js';
import { Admission, type Lane } from './admission.js';
import { MetadataReader, type ImageMetadata } from './metadata.js';
import sharp from 'sharp';
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
    return { source, metadata: await this.metadata.read(source) };
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
    const { source, metadata } = image;
    const key = `${source.identifier}\u0000${source.version}\u0000${plan.canonical}`;
    return this.results.get(key, async () => {
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
          return { ...(await render(source.path, metadata, plan, this.config.maxInputPixels)), method: 'sharp' };
        } finally {
          done();
        }
      });
    });
  }
}
