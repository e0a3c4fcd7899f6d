import type { Rect, RenderPlan } from '../../iiif/plan.js';
import type { LevelRead } from '../levels.js';
import type { TiffPage } from './tiff-layout.js';

/** Where a request's pixels lie when they all come from one stored JPEG tile. */
export interface TileSpot {
  page: TiffPage;
  /** Index into the page's tile arrays. */
  index: number;
  /** The part of the decoded tile the request covers. */
  crop: Rect;
  /** The request is the tile's top-left part (all of it, or an edge tile cut to the image) at its stored size. */
  corner: boolean;
  /** The request is the whole tile at its stored size: its bytes can be sent as they are. */
  exact: boolean;
}

const JPEG = 7;
const GREY = 1;

/**
 * Whether a request reads inside a single stored tile of the chosen level. Then the tile's own
 * JPEG bytes are the whole input: sent as they are when the request is exactly that tile and
 * asks for nothing the stored bytes do not already are (see sendableAsStored); cut in the
 * compressed domain when it is the tile's top-left part at stored size, as edge tiles are
 * (see cropJpegCorner); otherwise decoded alone and cropped — still far cheaper than opening
 * the TIFF through libvips. Pure.
 */
export function locateTile(plan: Pick<RenderPlan, 'width' | 'height'>, { level, region }: LevelRead, page: TiffPage | undefined): TileSpot | undefined {
  if (!page || !isPlainJpeg(page) || page.width !== level.width || page.height !== level.height) return undefined;
  const { tileWidth, tileHeight } = page;
  const column = Math.floor(region.x / tileWidth);
  const row = Math.floor(region.y / tileHeight);
  const lastColumn = Math.floor((region.x + region.width - 1) / tileWidth);
  const lastRow = Math.floor((region.y + region.height - 1) / tileHeight);
  if (column !== lastColumn || row !== lastRow) return undefined;
  const crop = { x: region.x - column * tileWidth, y: region.y - row * tileHeight, width: region.width, height: region.height };
  const corner = crop.x === 0 && crop.y === 0 && plan.width === crop.width && plan.height === crop.height;
  const exact = corner && crop.width === tileWidth && crop.height === tileHeight;
  return { page, index: row * Math.ceil(page.width / tileWidth) + column, crop, corner, exact };
}

/** jpg in the stored colours, not turned or mirrored: what a stored JPEG tile already is. */
export function sendableAsStored(plan: Pick<RenderPlan, 'format' | 'quality' | 'degrees' | 'mirror'>): boolean {
  return plan.format === 'jpg' && (plan.quality === 'default' || plan.quality === 'color') && plan.degrees === 0 && !plan.mirror;
}

/** 8-bit JPEG tiles any decoder reads right on their own: three colour channels or one grey. */
export function isPlainJpeg(page: TiffPage): boolean {
  if (page.compression !== JPEG || page.bitsPerSample !== 8 || !page.jpegTables || !page.tilesSelfDescribing) return false;
  return page.samplesPerPixel === 3 || (page.photometric === GREY && page.samplesPerPixel === 1);
}
