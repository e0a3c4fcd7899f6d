import type { Rect, RenderPlan } from '../iiif/plan.js';
import type { ImageMetadata, Level } from './metadata/types.js';

/**
 * The smallest stored level that still has at least as many pixels as the output needs, so
 * a zoomed-out tile decodes a small page instead of the full image. Levels are read only as
 * far as the choice needs: each is smaller than the one before, so the first that is too
 * small ends the search, and a request at full resolution reads none beyond the first.
 */
export async function chooseLevel(
  metadata: Pick<ImageMetadata, 'width' | 'height' | 'levels'>,
  plan: Pick<RenderPlan, 'region' | 'width' | 'height'>,
): Promise<Level> {
  const needX = plan.width / plan.region.width;
  const needY = plan.height / plan.region.height;
  let chosen = metadata.levels.first;
  // Every later level is narrower than the full size: less than one level pixel per full one.
  if (needX >= 1 || needY >= 1) return chosen;
  for (let index = 1; ; index++) {
    const level = await metadata.levels.at(index);
    if (!level) return chosen;
    const scale = 1 / levelScale(level, metadata);
    if (scale < needX || scale < needY) return chosen;
    chosen = level;
  }
}

/**
 * How many full-resolution pixels one level pixel stands for. A level made by halving is an
 * exact integer factor even when its size was rounded (6401 wide → 3200); other levels use
 * their width ratio.
 */
export function levelScale(level: { width: number; height: number }, full: { width: number; height: number }): number {
  const factor = Math.round(full.width / level.width);
  const fits = (levelSize: number, fullSize: number) =>
    levelSize === Math.floor(fullSize / factor) || levelSize === Math.ceil(fullSize / factor);
  return factor >= 1 && fits(level.width, full.width) && fits(level.height, full.height) ? factor : full.width / level.width;
}

/** Maps a full-resolution rectangle onto a level, covering at least the same content. */
export function regionAtLevel(region: Rect, full: { width: number; height: number }, level: Level): Rect {
  const scale = levelScale(level, full);
  const left = Math.min(level.width - 1, Math.floor(region.x / scale));
  const top = Math.min(level.height - 1, Math.floor(region.y / scale));
  const right = Math.min(level.width, Math.max(left + 1, Math.ceil((region.x + region.width) / scale)));
  const bottom = Math.min(level.height, Math.max(top + 1, Math.ceil((region.y + region.height) / scale)));
  return { x: left, y: top, width: right - left, height: bottom - top };
}

/** Where a render reads: the stored level that fits the request and the region mapped onto it. */
export interface LevelRead {
  level: Level;
  region: Rect;
}

/** Chooses the level once per plan; every later step (tile lookup, decode) reads it from here. */
export async function levelRead(
  metadata: Pick<ImageMetadata, 'width' | 'height' | 'levels'>,
  plan: Pick<RenderPlan, 'region' | 'width' | 'height'>,
): Promise<LevelRead> {
  const level = await chooseLevel(metadata, plan);
  return { level, region: regionAtLevel(plan.region, metadata, level) };
}
