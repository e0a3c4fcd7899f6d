import { formatUnavailable, renderTooLarge, undecodableSource } from '../../errors.js';
import { loadAddon, type LoadedAddon } from '../../native-addon.js';
import { bufferReader } from '../../source/range-reader.js';
import { sourceChanged } from '../../source/source.js';
import { checkTileParts, jp2Header, levelSize, type Jp2Header } from './codestream.js';

/**
 * JPEG 2000 pixels from the native OpenJPEG addon (native/openjp2, built by `npm ci` when
 * Debian's libopenjp2-7-dev is installed): one resolution level and one area of it per decode,
 * on the libuv thread pool, whose threads the addon lowers below the event loop's priority
 * (nice 10) and whose freed decode memory it hands back once no work is in flight. Without the
 * addon everything else keeps working and decodes are refused with a 501 that tells the
 * operator how to enable them. Decoders kept open between requests: pool.ts.
 */

/** The addon's interface (native/openjp2/src/addon.cc). */
interface NativeDecoder {
  decode(area: { x0: number; y0: number; x1: number; y1: number; maxPixels: number }): Promise<{ width: number; height: number; channels: number; data: Buffer }>;
  close(): Promise<void>;
}
interface NativeAddon {
  Decoder: new (input: Buffer | string, options: DecoderOptions) => NativeDecoder;
  openjpegVersion: string;
}

/** 8-bit samples, interleaved: grey, grey + alpha, RGB or RGBA. */
export interface Jp2Raster {
  data: Buffer;
  width: number;
  height: number;
  channels: 1 | 2 | 3 | 4;
}

export interface Jp2DecodeRequest {
  /** Resolution levels to discard: 0 is full size, each halves; at most the header's `levels`. */
  reduce: number;
  /**
   * The pixels wanted, in the coordinates of the reduced image (`levelSize(header, reduce)`);
   * the whole level when absent. The raster has exactly this size.
   */
  region?: { x: number; y: number; width: number; height: number };
  /** Most pixels the raster may have: refused (413) before decoding beyond it. */
  maxPixels: number;
  /** Most pixels the full-size image may have, as for every source (413 beyond). */
  maxSourcePixels: number;
}

const ENABLE = 'install libopenjp2-7-dev, python3, make and g++ (apt-get install), then run `npm run build:native`';

let loaded: LoadedAddon<NativeAddon> | undefined;

/** Loads the addon once; a missing build or a missing library (libopenjp2.so.7 removed) leaves the reason instead. */
function load(): LoadedAddon<NativeAddon> {
  loaded ??= loadAddon<NativeAddon>('openjp2', 'native OpenJPEG decoder');
  return loaded;
}

/** Whether JPEG 2000 images can be decoded in this process. */
export function jp2Available(): boolean {
  return 'addon' in load();
}

/**
 * What to tell the operator once at start when JPEG 2000 is unavailable (why, and how to enable
 * it); undefined when it is available. For logs only: it may name files on this machine.
 */
export function jp2UnavailableReason(): string | undefined {
  const state = load();
  return 'reason' in state ? `JPEG 2000 is unavailable: ${state.reason}; to serve it, ${ENABLE}` : undefined;
}

/** The OpenJPEG version decoding, when available (for the start-up log). */
export function openJpegVersion(): string | undefined {
  const state = load();
  return 'addon' in state ? state.addon.openjpegVersion : undefined;
}

/** What one decode asks OpenJPEG for: the level, the area on the reference grid, and the raster's size. */
export interface Jp2Decode {
  reduce: number;
  area: { x0: number; y0: number; x1: number; y1: number };
  width: number;
  height: number;
  maxPixels: number;
}

/**
 * Checks a request against the image and turns it into a decode: a `reduce` or `region` outside
 * the image is a caller's mistake and throws a RangeError; an area over `maxPixels` is refused
 * with a 413 before anything is decoded.
 */
export function planJp2Decode(header: Jp2Header, request: Jp2DecodeRequest): Jp2Decode {
  const { reduce } = request;
  if (!Number.isInteger(reduce) || reduce < 0 || reduce > header.levels) {
    throw new RangeError(`reduce ${reduce} is outside 0–${header.levels}`);
  }
  const level = levelSize(header, reduce);
  const region = request.region ?? { x: 0, y: 0, width: level.width, height: level.height };
  const { x, y, width, height } = region;
  if (![x, y, width, height].every(Number.isInteger) || x < 0 || y < 0 || width < 1 || height < 1 || x + width > level.width || y + height > level.height) {
    throw new RangeError(`region ${x},${y},${width},${height} is outside the ${level.width}×${level.height} level`);
  }
  if (width * height > request.maxPixels) {
    throw renderTooLarge(`decoding ${width}×${height} pixels is more than one render may (${request.maxPixels})`);
  }
  // Level pixels to full-resolution image coordinates. The level's pixel i covers reference-grid
  // columns from (origin + i) * scale, where origin = ceil(x0 / scale) (ISO 15444-1 B.5), so
  // OpenJPEG's own rounding gives back exactly the pixels asked for.
  const scale = 2 ** reduce;
  const span = (origin: number, length: number, from: number, count: number): [number, number] => {
    const first = Math.ceil(origin / scale) + from;
    return [first * scale - origin, Math.min((first + count) * scale, origin + length) - origin];
  };
  const [x0, x1] = span(header.x0, header.width, x, width);
  const [y0, y1] = span(header.y0, header.height, y, height);
  return { reduce, area: { x0, y0, x1, y1 }, width, height, maxPixels: request.maxPixels };
}

export interface DecoderOptions {
  /** The input's length in bytes. */
  size: number;
  /** The resolution level, as in Jp2DecodeRequest. */
  reduce: number;
  /** Whether later decodes of other areas may reuse the tile data the first one read. */
  reusable: boolean;
  /**
   * OpenJPEG threads one decode is split over. The first decode of an untiled archival JP2 is
   * mostly single-tile set-up that 2 threads shorten by a sixth at the same CPU (bench:jp2).
   */
  threads: number;
}

/**
 * A JPEG 2000 file (its bytes, or a local file's path) opened at one resolution level. Nothing
 * is read until the first decode, on the libuv pool. When `reusable`, later decodes of other areas
 * reuse the tile data the first one read (see native/openjp2/src/decode.h); `close` frees what
 * OpenJPEG holds, off the event loop too. One decode at a time.
 */
export class Jp2LevelDecoder {
  private readonly native: NativeDecoder;
  readonly reduce: number;

  constructor(input: Buffer | string, options: DecoderOptions) {
    const state = load();
    if (!('addon' in state)) throw unavailable();
    this.native = new state.addon.Decoder(input, options);
    this.reduce = options.reduce;
  }

  async decode(decode: Jp2Decode): Promise<Jp2Raster> {
    if (decode.reduce !== this.reduce) throw new RangeError(`a decoder of level ${this.reduce} cannot decode level ${decode.reduce}`);
    let decoded: Awaited<ReturnType<NativeDecoder['decode']>>;
    try {
      decoded = await this.native.decode({ ...decode.area, maxPixels: decode.maxPixels });
    } catch (error) {
      throw typed(error);
    }
    const { width, height } = decode;
    if (decoded.width !== width || decoded.height !== height || decoded.channels < 1 || decoded.channels > 4) {
      throw undecodableSource('the stored JPEG 2000 image decoded to an unexpected size');
    }
    return { data: decoded.data, width, height, channels: decoded.channels as Jp2Raster['channels'] };
  }

  close(): Promise<void> {
    return this.native.close();
  }
}

/**
 * Decodes one area of one resolution level of a JPEG 2000 file (JP2 or raw J2K) held in
 * memory, off the event loop, with a decoder of its own. The main and tile-part headers are
 * checked first (cheaply, in TypeScript) so a hostile one never reaches OpenJPEG; then only the
 * tiles and precincts covering the area are decoded, at the resolution asked for. Rejects with
 * IiifErrors: 501 without the addon, 413 beyond the pixel limits or for coding OpenJPEG would
 * spend too much memory on, 422 for a damaged file. A `reduce` or `region` outside the image is
 * a caller's mistake and throws a RangeError.
 */
export async function decodeJp2(file: Buffer, request: Jp2DecodeRequest, threads = 1): Promise<Jp2Raster> {
  if (!jp2Available()) throw unavailable();
  const header = jp2Header(file, request.maxSourcePixels);
  const decode = planJp2Decode(header, request);
  await checkTileParts(bufferReader(file), header);
  const decoder = new Jp2LevelDecoder(file, { size: file.length, reduce: decode.reduce, reusable: false, threads });
  try {
    return await decoder.decode(decode);
  } finally {
    await decoder.close();
  }
}

const unavailable = () => formatUnavailable(`JPEG 2000 images cannot be served here yet: the server's operator needs to ${ENABLE}`);

/** The addon's rejections as IiifErrors; anything else is a bug and stays what it is. */
function typed(error: unknown): unknown {
  if (!(error instanceof Error) || !('code' in error)) return error;
  if (error.code === 'ERR_JP2_CHANGED') return sourceChanged();
  if (error.code === 'ERR_JP2_TOO_LARGE') return renderTooLarge(`the JPEG 2000 decode is too large: ${error.message}`);
  if (error.code === 'ERR_JP2_UNDECODABLE' || error.code === 'ERR_JP2_ARGUMENT') {
    return undecodableSource(`the stored JPEG 2000 image cannot be decoded: ${error.message}`);
  }
  return error;
}
