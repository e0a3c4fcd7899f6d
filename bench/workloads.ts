/** The request lists of the benchmark workloads. Pure: URLs from image sizes. */

export interface Dimensions {
  width: number;
  height: number;
}

/**
 * The tiles of one zoom level (`factor` = 1, 2, 4, …), as a deep-zoom viewer asks for them: the
 * region in full-resolution pixels, the size the tile is shown at. IIIF 3 viewers send `w,h`,
 * 2.1 viewers `w,`.
 */
export function levelTiles(image: Dimensions, tileSize: number, factor: number, syntax: 2 | 3): string[] {
  const paths: string[] = [];
  const span = tileSize * factor;
  for (let y = 0; y < image.height; y += span) {
    for (let x = 0; x < image.width; x += span) {
      const w = Math.min(span, image.width - x);
      const h = Math.min(span, image.height - y);
      const outW = Math.ceil(w / factor);
      const outH = Math.ceil(h / factor);
      paths.push(`${x},${y},${w},${h}/${syntax === 3 ? `${outW},${outH}` : `${outW},`}/0/default.jpg`);
    }
  }
  return paths;
}

/** Every tile of every zoom level, from full resolution up to the level that is one tile. */
export function tilePaths(image: Dimensions, tileSize: number, syntax: 2 | 3): string[] {
  const paths: string[] = [];
  for (let factor = 1; ; factor *= 2) {
    paths.push(...levelTiles(image, tileSize, factor, syntax));
    if (Math.max(image.width, image.height) <= tileSize * factor) break;
  }
  return paths;
}

/** A deterministic shuffle (viewers do not request in raster order, and caches should not help). */
export function shuffled<T>(items: readonly T[], seed = 42): T[] {
  const out = [...items];
  let state = seed;
  for (let i = out.length - 1; i > 0; i--) {
    state = (state * 1_103_515_245 + 12_345) % 2 ** 31;
    const j = state % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}
