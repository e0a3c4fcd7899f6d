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
    return this.withPresentFile(source, async (present) => ({ source: present, metadata: await this.metadata.read(present) }));
  }

  plan(version: ApiVersion, request: ImageRequest, image: ResolvedImage): RenderPlan {
    return planRender(version, request, image.metadata, this.config.limits);
  }

  async render(image: ResolvedImage, plan: RenderPlan): Promise<Rendered> {
    const done = this.metrics.renderSeconds.startTimer({ format: plan.format });
    try {
      return await this.withPresentFile(image.source, (present) =>
        render(sourceInput(present), image.metadata, plan, this.config.maxInputPixels),
      );
    } finally {
      done();
    }
  }

  /** Forgets the source's copies and the probed metadata of an identifier. */
  async purge(identifier: string): Promise<void> {
    await this.source.purge?.(identifier);
    this.metadata.forget(identifier);
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
