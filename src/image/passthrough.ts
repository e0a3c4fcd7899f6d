import type { RenderPlan } from '../iiif/plan.js';
import type { TiffPage } from './tiff-layout.js';

export interface StoredTile {
  page: number;
  index: number;
}

const JPEG = 7;
const GREY = 1;

/**
 * Whether a request asks for exactly one tile as the file stores it, so its JPEG bytes can be
 * sent as they are — no decoding, no encoding (what iipsrv does for its speed). That needs: jpg
 * output in the stored colours without rotation; a region that is one whole tile of a stored
 * level, aligned to that level's grid and not cut by the image edge (stored edge tiles are
 * padded); and an output size equal to the tile size. Pure: decides from the plan and layout.
 */
export function findStoredTile(
  plan: RenderPlan,
  full: { width: number; height: number },
  pages: readonly TiffPage[] | undefined,
): StoredTile | undefined {
  if (!pages || plan.format !== 'jpg' || plan.degrees !== 0 || plan.mirror) return undefined;
  if (plan.quality !== 'default' && plan.quality !== 'color') return undefined;
  for (let p = 0; p < pages.length; p++) {
    const page = pages[p]!;
    if (plan.width !== page.tileWidth || plan.height !== page.tileHeight || !isPlainJpeg(page)) continue;
    const factor = levelFactor(page, full);
    if (factor === undefined) continue;
    const { x, y, width, height } = plan.region;
    if (width !== page.tileWidth * factor || height !== page.tileHeight * factor) continue;
    if (x % width !== 0 || y % height !== 0) continue;
    const column = x / width;
    const row = y / height;
    if ((column + 1) * page.tileWidth > page.width || (row + 1) * page.tileHeight > page.height) continue;
    return { page: p, index: row * Math.ceil(page.width / page.tileWidth) + column };
  }
  return undefined;
}

/** 8-bit JPEG tiles any browser decodes as they are: three colour channels or one grey. */
function isPlainJpeg(page: TiffPage): boolean {
  if (page.compression !== JPEG || page.bitsPerSample !== 8 || !page.jpegTables || !page.tilesSelfDescribing) return false;
  return page.samplesPerPixel === 3 || (page.photometric === GREY && page.samplesPerPixel === 1);
}

/**
 * The integer factor by which a stored level shrinks the full image, when each level pixel
 * stands for exactly factor × factor full pixels (its size is the full size divided by the
 * factor, rounded either way). Anything else is not a level we can map exactly.
 */
export function levelFactor(page: { width: number; height: number }, full: { width: number; height: number }): number | undefined {
  const factor = Math.round(full.width / page.width);
  if (factor < 1) return undefined;
  const fits = (levelSize: number, fullSize: number) =>
    levelSize === Math.floor(fullSize / factor) || levelSize === Math.ceil(fullSize / factor);
  return fits(page.width, full.width) && fits(page.height, full.height) ? factor : undefined;
}
