import { renderTooLarge, ServerError, undecodableSource } from '../../errors.js';
import type { Rect } from '../../iiif/plan.js';
import { loadAddon, type LoadedAddon } from '../../native-addon.js';
import type { Cut } from './jpeg-crop.js';
import { jpegColour } from './jpeg-tile.js';
import type { TileSpot } from './locate.js';

/**
 * The optional addon native/jpegtiles on Debian's libjpeg-turbo (built by `npm ci` when
 * libjpeg62-turbo-dev is installed; without it both parts fall back to what they replace).
 *
 * Rendering: a request that is the stored pixels as they are (jpg, default or colour, no turn or
 * mirror, at the level's own scale) whose region does not start on the JPEG block grid — a
 * viewer's tiles of another size than the stored ones. In one call on the libuv pool, each tile
 * is decoded from its bytes as stored (with the page's JPEGTables and Photometric, as libtiff
 * decodes it) only over the rows and columns the region needs (rows above it entropy-decoded and
 * skipped, rows below never read, columns beside it not transformed) into one raster, which is
 * encoded as the response. No sharp pipeline, whose fixed cost alone was a quarter of such a
 * tile's CPU; no compressed-domain cut on the event loop first; no standalone copies of the
 * tiles, whose churn alone made V8 run a full collection every ~50 requests.
 *
 * Cutting: the compressed-domain cut of jpeg-crop.ts, in C++.
 */

/** The addon's interface (native/jpegtiles/src/addon.cc). */
interface NativeTiles {
  render(
    tiles: Buffer[],
    options: {
      across: number;
      tileWidth: number;
      tileHeight: number;
      x: number;
      y: number;
      width: number;
      height: number;
      /** 0 RGB as stored, 1 YCbCr, 2 grey: the page's Photometric, as libtiff decodes it. */
      colour: number;
      tables: Buffer | undefined;
      quality: number;
      maxPixels: number;
    },
  ): Promise<Buffer>;
  cut(tiles: readonly Uint8Array[], options: { across: number } & Rect): Cut | undefined;
}

let loaded: LoadedAddon<NativeTiles> | undefined;

function load(): LoadedAddon<NativeTiles> {
  loaded ??= loadAddon<NativeTiles>('jpegtiles', 'native JPEG tile renderer');
  return loaded;
}

/**
 * The compressed-domain cut of jpeg-crop.ts in C++ (same algorithm, same output; its Huffman
 * parsing, most of a cut's CPU, runs about four times faster), on the calling thread; undefined
 * when the addon is not built.
 */
export function nativeCutter(): ((tiles: readonly Uint8Array[], across: number, rect: Rect) => Cut | undefined) | undefined {
  const state = load();
  if (!('addon' in state)) return undefined;
  const { addon } = state;
  return (tiles, across, rect) => addon.cut(tiles, { across, ...rect });
}

/** Whether this process can render stored JPEG tiles natively (else they go through sharp). */
export function nativeJpegAvailable(): boolean {
  return 'addon' in load();
}

const COLOURS = { rgb: 0, ycbcr: 1, grey: 2 } as const;

/**
 * The spot's region of its tiles (`stored`: the tiles as they lie in the file, in the spot's
 * order) as a baseline JPEG of exactly that size, at `quality`, 4:2:0 chroma and standard Huffman tables as sharp
 * writes; grey pages give grey JPEGs. Refused with 413 beyond `maxPixels` before anything is
 * allocated, 422 for a damaged tile (libjpeg's warnings count: never a grey patch).
 */
export async function renderJpegTiles(stored: Buffer[], spot: TileSpot, quality: number, maxPixels: number): Promise<Buffer> {
  const state = load();
  if (!('addon' in state)) throw new ServerError('JPEG_NATIVE_MISSING', 'the native JPEG tile renderer is not available');
  const { page, across, crop } = spot;
  const colour = jpegColour(page);
  if (!colour) throw new ServerError('JPEG_NATIVE_COLOUR', 'the page is not one whose JPEG tiles stand alone (see locateTiles)');
  try {
    return await state.addon.render(stored, {
      across,
      tileWidth: page.tileWidth,
      tileHeight: page.tileHeight,
      ...crop,
      colour: COLOURS[colour],
      tables: page.jpegTables,
      quality,
      maxPixels,
    });
  } catch (error) {
    throw typed(error);
  }
}

/** The addon's rejections as IiifErrors; anything else is a bug and stays what it is. */
function typed(error: unknown): unknown {
  if (!(error instanceof Error) || !('code' in error)) return error;
  if (error.code === 'ERR_JPEG_TOO_LARGE') return renderTooLarge(`the region is too large to render: ${error.message}`);
  if (error.code === 'ERR_JPEG_UNDECODABLE') return undecodableSource(`the stored image cannot be decoded: ${error.message}`);
  return error;
}
