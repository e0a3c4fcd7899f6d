import type { Rect, RenderPlan } from '../../iiif/plan.js';
import type { LevelRead } from '../levels.js';
import { jpegColour } from './jpeg-tile.js';
import type { TiffPage } from './tiff-layout.js';

/** The stored JPEG tiles a request's pixels all come from, on the level chosen for it. */
export interface TileSpot {
  page: TiffPage;
  /** Indexes into the page's tile arrays, row by row. */
  indexes: number[];
  /** Tiles per row in `indexes`. */
  across: number;
  /** The part of the tiles, joined in their grid, that the request covers. */
  crop: Rect;
  /** One tile, and the request is its top-left part (all of it, or an edge tile cut to the image) at its stored size. */
  corner: boolean;
  /** One tile, and the request is all of it at its stored size: its bytes can be sent as they are. */
  exact: boolean;
}

/**
 * The most stored tiles one request reads on its own: a viewer tile over stored tiles of a
 * quarter of its size is four. Larger regions go to libvips, which reads the page in strips
 * instead of holding every tile at once.
 */
const MAX_TILES = 16;

/**
 * The stored tiles of the chosen level that a request's region touches, when that level is a
 * page of JPEG tiles that can stand alone (see jpegColour) and they are few. Then those tiles
 * are the whole input: sent as they are when the request is exactly one tile and asks for
 * nothing the stored bytes do not already are (see sendableAsStored); cut from them in the
 * compressed domain when the request is their pixels at stored size, as edge tiles and viewer
 * tiles over smaller stored tiles are (see cutJpegTiles); otherwise decoded on their own — still
 * far cheaper than opening the TIFF through libvips. Pure.
 */
export function locateTiles(plan: Pick<RenderPlan, 'width' | 'height'>, { level, region }: LevelRead, page: TiffPage | undefined): TileSpot | undefined {
  if (!page || !jpegColour(page) || page.width !== level.width || page.height !== level.height) return undefined;
  const { tileWidth, tileHeight } = page;
  const column = Math.floor(region.x / tileWidth);
  const row = Math.floor(region.y / tileHeight);
  const across = Math.floor((region.x + region.width - 1) / tileWidth) - column + 1;
  const down = Math.floor((region.y + region.height - 1) / tileHeight) - row + 1;
  if (across * down > MAX_TILES) return undefined;
  const columns = Math.ceil(page.width / tileWidth);
  const indexes: number[] = [];
  for (let r = row; r < row + down; r++) for (let c = column; c < column + across; c++) indexes.push(r * columns + c);
  const crop = { x: region.x - column * tileWidth, y: region.y - row * tileHeight, width: region.width, height: region.height };
  const corner = indexes.length === 1 && crop.x === 0 && crop.y === 0 && plan.width === crop.width && plan.height === crop.height;
  const exact = corner && crop.width === tileWidth && crop.height === tileHeight;
  return { page, indexes, across, crop, corner, exact };
}

/** jpg in the stored colours, not turned or mirrored: what a stored JPEG tile already is. */
export function sendableAsStored(plan: Pick<RenderPlan, 'format' | 'quality' | 'degrees' | 'mirror'>): boolean {
  return plan.format === 'jpg' && (plan.quality === 'default' || plan.quality === 'color') && plan.degrees === 0 && !plan.mirror;
}
