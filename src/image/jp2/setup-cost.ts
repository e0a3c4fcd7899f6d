import { sourceTooLarge } from '../../errors.js';

/**
 * What OpenJPEG allocates before it decodes a single pixel, estimated from the header, so that
 * headers which would make it allocate gigabytes are refused first (413). Calibrated by peak RSS
 * with Debian's OpenJPEG 2.5.0:
 * - reading the header sets up coding parameters for every tile: about 8.5 KB a tile plus 1 KB a
 *   tile-component (65,535 one-pixel tiles: 620 MB);
 * - decoding a tile sets up its precincts and code-blocks for the whole tile, whatever area is
 *   asked for: about 300 bytes a code-block and 250 a precinct band (one 16000×16000 tile in
 *   4×4 code-blocks: 6 GB and 24 s of CPU; 4000×4000 in 2×2 precincts: 8.7 GB and 37 s).
 * Both are per decode, and several decodes run at once.
 */

/** How one component of a tile is coded (COD/COC, ISO 15444-1 A.6.1): what sets the counts. */
export interface ComponentCoding {
  /** Wavelet decomposition levels. */
  levels: number;
  /** Nominal code-block size in samples. */
  codeBlock: { width: number; height: number };
  /** Precinct size for each resolution, lowest (LL) first: levels + 1 entries, powers of two. */
  precincts: Array<{ width: number; height: number }>;
}

const TILE_BYTES = 8704;
const TILE_COMPONENT_BYTES = 1024;
const CODE_BLOCK_BYTES = 300;
const PRECINCT_BAND_BYTES = 250;
const MiB = 1024 * 1024;
/** Tile parameters for the whole image: 4,096 tiles of RGB (16383² in 256-px tiles) take 48 MB. */
const MAX_TILE_PARAMETER_BYTES = 96 * MiB;
/**
 * One tile's precincts and code-blocks: a 268-megapixel untiled RGBA image in 64×64 code-blocks
 * (the usual size) takes about 105 MB.
 */
const MAX_TILE_STRUCTURE_BYTES = 160 * MiB;

/** Refuses a tile grid whose coding parameters alone would cost too much. */
export function checkTileCount(tiles: number, components: number): void {
  if (tiles * (TILE_BYTES + TILE_COMPONENT_BYTES * components) > MAX_TILE_PARAMETER_BYTES) {
    throw sourceTooLarge(`the stored image is cut into ${tiles} tiles, more than this server decodes`);
  }
}

type TileComponents = Array<{ dx: number; dy: number; coding: ComponentCoding }>;

/** What OpenJPEG allocates for the precincts and code-blocks of one width×height tile. */
export function tileStructureBytes(width: number, height: number, components: TileComponents): number {
  let bytes = 0;
  for (const { dx, dy, coding } of components) bytes += structureBytes(Math.ceil(width / dx), Math.ceil(height / dy), coding);
  return bytes;
}

/** Refuses a tile whose precincts and code-blocks would cost too much to set up. */
export function checkTileStructures(width: number, height: number, components: TileComponents): void {
  const bytes = tileStructureBytes(width, height, components);
  if (bytes > MAX_TILE_STRUCTURE_BYTES) {
    throw sourceTooLarge(`the stored image is coded in blocks too small for its ${width}×${height} tiles (about ${Math.ceil(bytes / MiB)} MB to set up each)`);
  }
}

/**
 * Precinct bands and code-blocks of one tile-component over all its resolutions (B.6, B.7),
 * rounded up: each resolution halves the size, a band of a resolution above the lowest is half
 * its size, and a code-block never straddles a precinct (so it is at most half a precinct there).
 */
function structureBytes(width: number, height: number, coding: ComponentCoding): number {
  let bytes = 0;
  for (let resolution = 0; resolution <= coding.levels; resolution++) {
    const scale = 2 ** (coding.levels - resolution);
    const [w, h] = [Math.ceil(width / scale), Math.ceil(height / scale)];
    const precinct = coding.precincts[resolution]!;
    const lowest = resolution === 0;
    const bands = lowest ? 1 : 3;
    const [bandWidth, bandHeight] = lowest ? [w, h] : [Math.ceil(w / 2), Math.ceil(h / 2)];
    const blockWidth = Math.min(coding.codeBlock.width, lowest ? precinct.width : precinct.width / 2);
    const blockHeight = Math.min(coding.codeBlock.height, lowest ? precinct.height : precinct.height / 2);
    const precincts = (Math.ceil(w / precinct.width) + 1) * (Math.ceil(h / precinct.height) + 1);
    const blocks = bands * (Math.ceil(bandWidth / blockWidth) + 1) * (Math.ceil(bandHeight / blockHeight) + 1);
    bytes += blocks * CODE_BLOCK_BYTES + precincts * bands * PRECINCT_BAND_BYTES;
  }
  return bytes;
}
