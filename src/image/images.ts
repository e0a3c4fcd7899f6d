import type { Config } from '../config.js';
import { planRender, type RenderPlan } from '../iiif/plan.js';
import type { ApiVersion, ImageRequest } from '../iiif/request.js';
import type { Metrics } from '../metrics.js';
import { access } from 'node:fs/promises';
import { sourceInput, type ImageSource, type SourceRef } from '../source/source.js';
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

  plan(version: ApiVersion, request: ImageRequest, image: ResolvedImage): RenderPlan {
    return planRender(version, request, image.metadata, this.config.limits);
  }

  async render(image: ResolvedImage, plan: RenderPlan): Promise<Rendered> {
    const done = this.metrics.renderSeconds.startTimer({ format: plan.format });
    try {
      return await this.renderSource(image.source, image, plan);
    } catch (error) {
      // A cached copy can be evicted between resolving and reading (see DiskCache): resolve
      // once more, which fetches it again, rather than failing the request.
      if (image.source.bytes || (await exists(image.source.path))) throw error;
      const again = await this.source.resolve(image.source.identifier);
      if (again.version !== image.source.version) throw error;
      return await this.renderSource(again, image, plan);
    } finally {
      done();
    }
  }

  /** Forgets the source's copies and the probed metadata of an identifier. */
  async purge(identifier: string): Promise<void> {
    await this.source.purge?.(identifier);
    this.metadata.forget(identifier);
  }

  private renderSource(source: SourceRef, image: ResolvedImage, plan: RenderPlan): Promise<Rendered> {
    return render(sourceInput(source), image.metadata, plan, this.config.maxInputPixels);
  }
}

const exists = (path: string): Promise<boolean> =>
  access(path).then(
    () => true,
    () => false,
  );
