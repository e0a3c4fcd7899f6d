import type { Config } from '../config.js';
import { buildInfo, tileLayout } from '../iiif/info.js';
import { planRender, type RenderPlan } from '../iiif/plan.js';
import type { ApiVersion, ImageRequest } from '../iiif/request.js';
import type { Metrics } from '../metrics.js';
import type { ImageSource, SourceRef } from '../source/source.js';
import { MetadataReader, type ImageMetadata } from './metadata.js';
import { render, type Rendered } from './render.js';

export interface ResolvedImage {
  source: SourceRef;
  metadata: ImageMetadata;
}

/** The image pipeline behind the routes: identifier → source → metadata → plan → pixels. */
export class Images {
  private readonly metadata: MetadataReader;

  constructor(
    private readonly source: ImageSource,
    private readonly config: Config,
    private readonly metrics: Metrics,
  ) {
    this.metadata = new MetadataReader(config.maxInputPixels, config.metadataCacheEntries);
  }

  async resolve(identifier: string): Promise<ResolvedImage> {
    const source = await this.source.resolve(identifier);
    return { source, metadata: await this.metadata.read(source) };
  }

  /** The image information document (info.json) for an image published at `id`. */
  info(version: ApiVersion, id: string, image: ResolvedImage): Record<string, unknown> {
    const { tileSize, limits } = this.config;
    return buildInfo[version]({ id, image: image.metadata, layout: tileLayout(image.metadata, tileSize, limits), limits });
  }

  plan(version: ApiVersion, request: ImageRequest, image: ResolvedImage): RenderPlan {
    return planRender(version, request, image.metadata, this.config.limits);
  }

  async render(image: ResolvedImage, plan: RenderPlan): Promise<Rendered> {
    const done = this.metrics.renderSeconds.startTimer({ format: plan.format });
    try {
      return await render(image.source.path, image.metadata, plan, this.config.maxInputPixels);
    } finally {
      done();
    }
  }
}
