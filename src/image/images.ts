import sharp from 'sharp';
import { identifierPrefix, requestKey, versionKey } from '../cache/keys.js';
import { ResultCache, type CachedResult } from '../cache/result-cache.js';
import type { Config } from '../config.js';
import { buildInfo, tileLayout } from '../iiif/info.js';
import { planRender, type RenderPlan } from '../iiif/plan.js';
import type { ApiVersion, ImageRequest } from '../iiif/request.js';
import type { Metrics } from '../metrics.js';
import { LocalFiles } from '../source/local-files.js';
import { isSourceChanged, type ImageFile, type ImageSource, type SourceRef } from '../source/source.js';
import { Admission, type Lane } from './admission.js';
import { laneFor, renderCost } from './cost.js';
import { levelRead, type LevelRead } from './levels.js';
import { Jp2Decoders } from './jp2/pool.js';
import type { Jp2Header } from './jp2/codestream.js';
import type { ImageMetadata } from './metadata/types.js';
import { Preparation } from './prepare.js';
import type { SharedPyramids } from './pyramid/shared.js';
import type { Pyramids } from './pyramid/store.js';
import { joinStoredTiles } from './render/from-tiles.js';
import { render, renderFrom, type RenderDeadline } from './render/render.js';
import { cutJpegTiles, mcuSize } from './tiles/jpeg-crop.js';
import { nativeJpegAvailable, renderJpegTiles } from './tiles/jpeg-native.js';
import { jpegColour } from './tiles/jpeg-tile.js';
import { locateTiles, sendableAsStored, type TileSpot } from './tiles/locate.js';
import { readStoredTiles, standaloneTiles } from './tiles/stored-jpegs.js';
import { decoding, vanished } from './vanished.js';

export interface ResolvedImage {
  /** The source image: identifier, version and dates (what ETags and cache keys use). */
  source: SourceRef;
  /** What renders read: the source's own file, or the pyramid built from it. */
  input: ImageFile;
  /** Of `input`: sizes, stored levels, tile layout. */
  metadata: ImageMetadata;
}

export interface ImagePlan extends RenderPlan {
  /** The stored level that fits and the region on it, chosen once here. */
  read: LevelRead;
  /** The metadata `read` was chosen on: plans are remembered per source version, and what it reads may change (below). */
  readOf: ImageMetadata;
  lane: Lane;
  /** Source version + canonical request: the result-cache key, built once per plan. */
  resultKey: string;
}

/** Whether a rectangle of JPEG tiles starts on their MCU grid. */
function onBlockGrid(tile: Buffer, { x, y }: { x: number; y: number }): boolean {
  const mcu = mcuSize(tile);
  return mcu !== undefined && x % mcu.width === 0 && y % mcu.height === 0;
}

/**
 * Stored tiles up to this many bytes are cut without waiting for a render lane: about 0.3 ms of
 * Huffman parsing (`npm run bench:steps`: 12 KB of tiles 0.14 ms, 149 KB 1.1 ms).
 */
const QUICK_CUT_BYTES = 32 * 1024;

/** Whether cutting these stored tiles costs less than a turn in a render lane (see QUICK_CUT_BYTES). */
const isQuickCut = (stored: Buffer[]): boolean => stored.reduce((bytes, tile) => bytes + tile.length, 0) <= QUICK_CUT_BYTES;

/** The spot's region cut from its tiles in the compressed domain (native), when that cut is the whole answer. */
function cutAsStored(stored: Buffer[], spot: TileSpot): Buffer | undefined {
  const tiles = onBlockGrid(stored[0]!, spot.crop) ? standaloneTiles(stored, spot.page) : undefined;
  const cut = tiles && (tiles.length > 1 || spot.corner) ? cutJpegTiles(tiles, spot.across, spot.crop, true) : undefined;
  return cut && !cut.x && !cut.y ? cut.jpeg : undefined;
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
  /** The pyramid files, kept open between tile reads. */
  private readonly pyramidFiles: LocalFiles;
  /** Retry-After when a render in each lane runs past its deadline. */
  private readonly retryAfter: Record<Lane, number>;
  /** OpenJPEG decoders kept open for the JPEG 2000 images being read. */
  private readonly jp2Decoders: Jp2Decoders;
  /** Whether stored JPEG tiles are rendered by the native libjpeg-turbo addon (when built and not turned off). */
  private readonly nativeJpeg: boolean;

  constructor(
    private readonly source: ImageSource,
    private readonly config: Config,
    private readonly metrics: Metrics,
    pyramids?: Pyramids,
    /** The fleet's derivative store in front of `pyramids` (IIIF_DERIVATIVE_PREFIX). */
    shared?: SharedPyramids,
  ) {
    this.results = new ResultCache(config.resultCacheBytes, config.resultCacheMaxItemBytes, metrics);
    this.pyramidFiles = new LocalFiles(config.openTileFiles);
    this.retryAfter = { cheap: config.renderRetryAfterSeconds, expensive: config.largeRenderRetryAfterSeconds };
    this.jp2Decoders = new Jp2Decoders(config.jp2MemoryBytes, { threads: config.jp2DecodeThreads });
    this.nativeJpeg = config.nativeJpeg && nativeJpegAvailable();
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
      pyramids: pyramids && { store: pyramids, schedule, shared },
      files: this.pyramidFiles,
    });
  }

  /**
   * The image's source, its metadata, and what renders read: the source file or its pyramid.
   * Nothing has been answered yet, so when the source changes while its headers are being read
   * (or a cached copy vanishes), it is resolved and prepared once more.
   */
  async resolve(identifier: string): Promise<ResolvedImage> {
    const source = await this.source.resolve(identifier);
    try {
      return await this.prepare(source);
    } catch (error) {
      if (!isSourceChanged(error) && !vanished(error)) throw error;
      this.preparation.forget(identifier);
      return this.prepare(await this.source.resolve(identifier));
    }
  }

  /** The image information document (info.json) for an image published at `id`. */
  info(version: ApiVersion, id: string, image: ResolvedImage): Record<string, unknown> {
    const { tileSize, limits } = this.config;
    return buildInfo[version]({ id, image: image.metadata, layout: tileLayout(image.metadata, tileSize, limits), limits });
  }

  /**
   * Plans a render and decides its lane; refuses (413) what could never fit its memory or time
   * budget. Reads the smaller levels' headers the choice needs (a remote pyramid's, on first need).
   */
  async plan(version: ApiVersion, request: ImageRequest, image: ResolvedImage): Promise<ImagePlan> {
    const plan = planRender(version, request, image.metadata, this.config.limits);
    const read = await levelRead(image.metadata, plan);
    return {
      ...plan,
      read,
      readOf: image.metadata,
      lane: laneFor(renderCost(plan, read, image.metadata.jp2 ? 'openjpeg' : 'libvips'), plan.format, this.config),
      resultKey: requestKey(image.source.identifier, image.source.version, plan.canonical),
    };
  }

  render(image: ResolvedImage, plan: ImagePlan): Promise<RenderOutcome> {
    return this.results.get(plan.resultKey, () => this.whilePresent(image, (present) => this.produce(present, plan)));
  }

  /**
   * The bytes, cheapest way first: a stored tile as it is; cut from the stored tiles without
   * decoding; the stored tiles the region touches decoded (one tile, or one JPEG cut from
   * several); the stored tiles under a larger region of a remote file, read by range and
   * joined; the whole file through libvips. A stored tile as it is skips the render lanes; so
   * does a cut of few bytes (see storedPixelsNatively and fromCut). Bytes are
   * fetched before a lane is taken: a download must not hold a render slot.
   */
  private async produce(image: ResolvedImage, plan: ImagePlan): Promise<CachedResult> {
    // A plan made while this version was read from elsewhere (the source while the fleet
    // converted it, another copy of its pyramid) must not read that file's levels from this one.
    const read = plan.readOf === image.metadata ? plan.read : await levelRead(image.metadata, plan);
    const { level, region } = read;
    const { reader } = image.input;
    if (image.metadata.jp2) return this.decodeJp2(image, plan, read, image.metadata.jp2);
    const { encoding } = this.config;
    const deadline = this.deadline(plan);
    const spot = locateTiles(plan, read, level.tiles);
    const stored = spot && (await readStoredTiles(reader, spot));
    if (spot && stored) {
      const asStored = sendableAsStored(plan);
      const atStoredSize = plan.width === spot.crop.width && plan.height === spot.crop.height;
      // The stored pixels at their scale: libjpeg-turbo decodes and encodes them in one native
      // call from the tiles as stored, unless they can be sent as they are, or the region starts
      // on their block grid, where a cut is the whole answer without generation loss.
      if (asStored && atStoredSize && this.nativeJpeg && !spot.exact) return this.storedPixelsNatively(plan, stored, spot, level.page);
      const tiles = standaloneTiles(stored, spot.page);
      if (tiles && asStored && spot.exact) return { data: tiles[0]!, level: level.page, method: 'passthrough' };
      if (tiles && (tiles.length > 1 || (asStored && spot.corner))) {
        const cutAnswer = asStored && atStoredSize;
        const fromCut = await this.cutFirst(plan, stored, (inLane) => this.fromCut(plan, tiles, spot, level.page, cutAnswer, deadline, inLane));
        if (fromCut) return fromCut;
      }
      if (tiles?.length === 1) return this.decode(plan, 'tile', () => renderFrom(sharp(tiles[0]), spot.crop, plan, level.page, encoding, deadline));
    }
    if (!image.input.onDisk && level.tiles && jpegColour(level.tiles)) {
      const joined = await joinStoredTiles(reader, level.tiles, region);
      if (joined) return this.decode(plan, 'tiles', () => renderFrom(joined.image, joined.crop, plan, level.page, encoding, deadline));
    }
    const whole = await image.input.whole();
    return this.decode(plan, 'sharp', () =>
      decoding(whole, (input) => render(input, image.metadata.autoOrient, read, plan, this.config.maxInputPixels, encoding, deadline)),
    );
  }

  /**
   * The stored pixels at their scale, through native/jpegtiles (see jpeg-native.ts): cut from
   * the tiles without decoding where the region starts on their block grid (lossless), else
   * decoded and encoded by libjpeg-turbo in the plan's lane, its raster bounded like any
   * render's. A cut of more than QUICK_CUT_BYTES of tiles waits in the lane too, although it
   * needs no pool thread: a 300-px tile's cut over four 256-px stored tiles costs about a
   * millisecond, and such cuts overtaking the queued decodes stretched the latency tail of a
   * mixed workload (W9 at 32 connections: p99 87–98 ms outside the lane, 73–77 ms in it;
   * bench/README.md). Smaller cuts cost less than a turn in the lane does and are answered at
   * once (W8's 128-px tiles: 0.14 ms).
   */
  private storedPixelsNatively(plan: ImagePlan, stored: Buffer[], spot: TileSpot, level: number): Promise<CachedResult> {
    return this.cutFirst(plan, stored, async (inLane) => {
      const cut = cutAsStored(stored, spot);
      if (cut) return { data: cut, level, method: 'cut' };
      const maxPixels = Math.floor(this.config.renderMemoryBytes / 4);
      return this.rendered(plan, 'libjpeg', inLane, async () => ({ data: await renderJpegTiles(stored, spot, this.config.encoding.jpegQuality, maxPixels), level }));
    });
  }

  /**
   * Work that starts with a cut of these stored tiles and may go on to a render: at once when
   * the cut is quick (a render then takes its own turn in the lane), else all of it in one lane
   * slot, so the request is admitted once. `inLane` tells the work which.
   */
  private cutFirst<T>(plan: ImagePlan, stored: Buffer[], work: (inLane: boolean) => Promise<T>): Promise<T> {
    return isQuickCut(stored) ? work(false) : this.admitted(plan, () => work(true));
  }

  /** A render in the lane slot the caller holds, or through admission. */
  private async rendered(plan: ImagePlan, method: CachedResult['method'], inLane: boolean, run: () => Promise<Omit<CachedResult, 'method'>>): Promise<CachedResult> {
    return inLane ? { ...(await run()), method } : this.decode(plan, method, run);
  }

  /**
   * The region cut from its stored tiles in the compressed domain (natively, or in JavaScript
   * without the addon): the answer itself when it starts on the tiles' block grid and is wanted
   * as stored, else rendered by sharp from the cut (see cutFirst). Undefined when the tiles
   * cannot be cut (the caller decodes them).
   */
  private async fromCut(
    plan: ImagePlan,
    tiles: Buffer[],
    spot: TileSpot,
    page: number,
    cutAnswer: boolean,
    deadline: RenderDeadline,
    inLane: boolean,
  ): Promise<CachedResult | undefined> {
    const cut = cutJpegTiles(tiles, spot.across, spot.crop, this.nativeJpeg);
    if (!cut) return undefined;
    if (cutAnswer && !cut.x && !cut.y) return { data: cut.jpeg, level: page, method: 'cut' };
    // A cut is the region from its top-left MCU on: cropped further only when it starts inside one.
    const crop = cut.x || cut.y ? { ...spot.crop, x: cut.x, y: cut.y } : undefined;
    return this.rendered(plan, 'tile', inLane, () => renderFrom(sharp(cut.jpeg), crop, plan, page, this.config.encoding, deadline));
  }

  /**
   * JPEG 2000: OpenJPEG decodes only the region, at the resolution level the plan chose
   * (reduce), on the libuv pool, with a decoder kept open for this file and level when there is
   * one (jp2/pool.ts); sharp then sizes, turns and encodes it like any other render.
   */
  private decodeJp2(image: ResolvedImage, plan: ImagePlan, read: LevelRead, header: Jp2Header): Promise<CachedResult> {
    const { level, region } = read;
    const { input, source } = image;
    const file = { key: versionKey(source.identifier, source.version), header, reader: input.reader, whole: () => input.whole() };
    return this.decode(plan, 'jp2', async () => {
      const raster = await this.jp2Decoders.decode(file, {
        reduce: level.page,
        region,
        maxPixels: Math.floor(this.config.renderMemoryBytes / 4),
        maxSourcePixels: this.config.maxInputPixels,
      });
      const pixels = sharp(raster.data, { raw: { width: raster.width, height: raster.height, channels: raster.channels } });
      return renderFrom(pixels, undefined, plan, level.page, this.config.encoding, this.deadline(plan));
    });
  }

  /** How long one render of this plan may run (sharp's timeout), and the Retry-After past it. */
  private deadline(plan: ImagePlan): RenderDeadline {
    return { seconds: this.config.renderTimeoutSeconds, retryAfterSeconds: this.retryAfter[plan.lane] };
  }

  /** One sharp pipeline in the plan's lane, timed. */
  private decode(plan: ImagePlan, method: CachedResult['method'], run: () => Promise<Omit<CachedResult, 'method'>>): Promise<CachedResult> {
    return this.admitted(plan, async () => ({ ...(await run()), method }));
  }

  /** `run` in the plan's lane, timed as a render. */
  private admitted<T>(plan: ImagePlan, run: () => Promise<T>): Promise<T> {
    return this.admission.run(plan.lane, async () => {
      const done = this.metrics.renderSeconds.startTimer({ format: plan.format });
      try {
        return await run();
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
    this.jp2Decoders.forget(identifierPrefix(identifier));
  }

  /** Closes the files kept open for reads and lets the source finish its cache writes (the server is shutting down). */
  async close(): Promise<void> {
    this.pyramidFiles.clear();
    this.jp2Decoders.clear();
    await this.source.close?.();
  }

  /**
   * Runs `use` on a prepared image. A cached copy (source object or pyramid) can be evicted
   * between preparing and reading it (see DiskCache); then the identifier is resolved and
   * prepared once more, which fetches or builds it again, rather than failing the request —
   * as long as the source is still the same version the response is labelled with.
   */
  private async whilePresent<T>(image: ResolvedImage, use: (image: ResolvedImage) => Promise<T>): Promise<T> {
    try {
      return await use(image);
    } catch (error) {
      if (!vanished(error)) throw error;
      this.preparation.forget(image.source.identifier);
      const again = await this.source.resolve(image.source.identifier);
      if (again.version !== image.source.version) throw error;
      return use(await this.prepare(again));
    }
  }

  private async prepare(source: SourceRef): Promise<ResolvedImage> {
    const { input, metadata } = await this.preparation.get(source);
    return { source, input, metadata };
  }
}
