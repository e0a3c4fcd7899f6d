import type { Dimensions } from '../../iiif/plan.js';
import type { TiffLayout } from '../tiles/tiff-layout.js';
import type { Level, StoredLevels } from './types.js';

/**
 * Whether a page is a reduced copy of the image, one step below `previous`: smaller, and of the
 * same shape within rounding. Other pages (scanned documents, thumbnails of another shape, a
 * page as large as the last) end the levels.
 */
export function isReducedCopy(page: Dimensions, previous: Dimensions, full: Dimensions): boolean {
  if (!page.width || !page.height || page.width >= previous.width) return false;
  return Math.abs(page.width / full.width - page.height / full.height) <= 2 / Math.min(page.width, page.height);
}

/** Levels already known, all of them (read with the header). */
export function listedLevels(levels: Level[]): StoredLevels {
  return { first: levels[0]!, several: levels.length > 1, at: async (index) => levels[index] };
}

/**
 * A tiled TIFF's levels: the first page at once, each later one when first asked for.
 * `several`: whether it is known (or taken) to store smaller copies.
 */
export function tiffLevels(layout: TiffLayout, several: boolean): StoredLevels {
  const first: Level = { width: layout.first.width, height: layout.first.height, page: 0, tiles: layout.first };
  const at = async (index: number): Promise<Level | undefined> => {
    if (index === 0) return first;
    const previous = await at(index - 1);
    const page = previous && (await layout.page(index));
    if (!page || !isReducedCopy(page, previous, first)) return undefined;
    return { width: page.width, height: page.height, page: index, tiles: page };
  };
  return { first, several, at };
}
