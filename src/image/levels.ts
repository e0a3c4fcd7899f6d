import type { Rect, RenderPlan } from '../iiif/plan.js';
import type { ImageMetadata, Level } from './metadata/types.js';

/**
 * The smallest stored level that still has at least as many pixels as the output needs, so
 * a zoomed-out tile decodes a small page instead of the full image.
 */
export function chooseLevel(metadata: Pick<ImageMetadata, 'width' | 'height' | 'levels'>, plan: Pick<RenderPlan, 'region' | 'width' | 'height'>): Level {
  const needX = plan.width / plan.region.width;
  const needY = plan.height / plan.region.height;
  let chosen = metadata.levels[0]!;
  for (const level of metadata.levels) {
    const scale = 1 / levelScale(level, metadata);
    if (scale >= needX && scale >= needY) chosen = level;
  }
  return chosen;
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
export function levelRead(metadata: Pick<ImageMetadata, 'width' | 'height' | 'levels'>, plan: Pick<RenderPlan, 'region' | 'width' | 'height'>): LevelRead {
  const level = chooseLevel(metadata, plan);
  return { level, region: regionAtLevel(plan.region, metadata, level) };
}
