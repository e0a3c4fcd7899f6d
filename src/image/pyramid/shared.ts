import type { Counter } from 'prom-client';
import type { Log } from '../../cache/disk-cache.js';
import { prefetch } from '../../derivatives/directories.js';
import { DerivativeStoreError } from '../../derivatives/errors.js';
import type { FleetConversions } from '../../derivatives/fleet.js';
import type { Derivative, DerivativeStore } from '../../derivatives/store.js';
import type { Metrics } from '../../metrics.js';
import type { ImageFile, SourceRef } from '../../source/source.js';
import type { Dimensions } from '../../iiif/plan.js';
import type { BuiltPyramid, Pyramids } from './store.js';

export interface SharedPyramidsOptions {
  fleet: FleetConversions;
  store: DerivativeStore;
  /** This container's pyramids: where conversions are made, and a cache of them. */
  local: Pyramids;
  /** The S3 key of a source (the source prefix and the identifier): what derivatives are named by. */
  sourceKey(identifier: string): string;
  /** A derivative's pyramid read by range, pinned to its ETag (S3Source.fileOf). */
  open(derivative: Derivative): ImageFile;
  metrics: Metrics;
  log: Log;
}

/**
 * Pyramids shared by the fleet through the derivative store (IIIF_DERIVATIVE_PREFIX): one
 * conversion per source version across every container. A pyramid already on this
 * container's disk is read there; otherwise the fleet's derivative is read from S3 by range;
 * when there is none, this container converts it (locally, as without a fleet), publishes it
 * and reads its own copy; when another container is converting it, the wait is bounded and
 * then the request is served from the source. The store failing never fails a request: the
 * pyramid is built and kept locally, and the failure logged once until the store works again.
 */
export class SharedPyramids {
  private failing = false;
  private readonly fallbacks: Counter;

  constructor(private readonly options: SharedPyramidsOptions) {
    this.fallbacks = options.metrics.counter('iiif_derivative_fallbacks_total', 'Pyramids built or read locally because the derivative store failed.');
  }

  /**
   * What renders of this source version read: a local pyramid, the fleet's derivative, or
   * undefined when another container's conversion outlasted the wait (read the source).
   */
  async pyramidFor(source: SourceRef, image: Dimensions, schedule: <T>(work: () => Promise<T>) => Promise<T>): Promise<BuiltPyramid | ImageFile | undefined> {
    const { local, fleet } = this.options;
    if (local.has(source)) return local.pyramidFor(source, schedule);
    let built: BuiltPyramid | undefined;
    try {
      const obtained = await fleet.obtain(this.options.sourceKey(source.identifier), source.version, async () => {
        built = await local.pyramidFor(source, schedule);
        // Stored beside the pyramid for operators and tools: the size info.json gives.
        return { pyramidPath: built.path, info: { width: image.width, height: image.height } };
      });
      this.working();
      if (!obtained.derivative) return undefined;
      // Built here: this container's own copy is the cheapest to read.
      if (built) return built;
      const file = this.options.open(obtained.derivative);
      // Every directory with the marker, or in one round of requests, rather than one after another as a walk would.
      await prefetch(file, obtained.derivative.directories, obtained.derivative.carried);
      return file;
    } catch (error) {
      if (!(error instanceof DerivativeStoreError)) throw error;
      this.failed(error);
      return built ?? local.pyramidFor(source, schedule);
    }
  }

  /** Whether the fleet's store holds a complete derivative of this source version. */
  async published(source: SourceRef): Promise<boolean> {
    return (await this.options.store.find(this.options.sourceKey(source.identifier), source.version, { withDirectories: false })) !== undefined;
  }

  /** Deletes every derivative of an identifier from the store (an operator's purge). */
  async purge(identifier: string): Promise<void> {
    await this.options.store.purge(this.options.sourceKey(identifier));
  }

  private failed(error: DerivativeStoreError): void {
    this.fallbacks.inc();
    if (this.failing) return;
    this.failing = true;
    this.options.log.warn({ err: error }, 'the derivative store failed; pyramids are built and read locally until it works again');
  }

  private working(): void {
    if (!this.failing) return;
    this.failing = false;
    this.options.log.info({}, 'the derivative store works again; pyramids are shared by the fleet');
  }
}
