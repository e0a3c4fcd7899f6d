/** What a deep-zoom viewer asks for when someone opens an image and zooms in: its tile URLs, in order. */

export interface SessionOptions {
  width: number;
  height: number;
  tileSize: number;
  /** The viewer's size on screen, in pixels. */
  viewport: { width: number; height: number };
  /** How many tiles the session asks for in all. */
  tiles: number;
}

/**
 * The tiles of one viewer session, as OpenSeadragon asks for them on an IIIF 3 tile source:
 * the home view (every tile of each level, coarsest first, down to the finest whole level that
 * fits the viewport), then zooming into the centre, ×2 a step, a viewport of tiles at each
 * level, until `tiles` URLs (each the image's path below its base URI:
 * region/size/rotation/quality.format).
 */
export function viewerSession({ width, height, tileSize, viewport, tiles }: SessionOptions): string[] {
  const urls: string[] = [];
  const add = (factor: number, left: number, top: number, right: number, bottom: number) => {
    const span = tileSize * factor;
    for (let row = Math.floor(top / span); row * span < Math.min(bottom, height); row++) {
      for (let column = Math.floor(left / span); column * span < Math.min(right, width); column++) {
        const [x, y] = [column * span, row * span];
        const [w, h] = [Math.min(span, width - x), Math.min(span, height - y)];
        urls.push(`${x},${y},${w},${h}/${Math.ceil(w / factor)},${Math.ceil(h / factor)}/0/default.jpg`);
      }
    }
  };
  // The coarsest level: the whole image in one tile, as info.json's largest scale factor says.
  let coarsest = 1;
  while (Math.max(width, height) / coarsest > tileSize) coarsest *= 2;
  let home = coarsest;
  for (let factor = coarsest; factor >= 1 && width / factor <= viewport.width && height / factor <= viewport.height; factor /= 2) {
    add(factor, 0, 0, width, height);
    home = factor;
  }
  for (let factor = home / 2; factor >= 1 && urls.length < tiles; factor /= 2) {
    const [w, h] = [viewport.width * factor, viewport.height * factor];
    const [left, top] = [Math.max(0, (width - w) / 2), Math.max(0, (height - h) / 2)];
    add(factor, left, top, left + w, top + h);
  }
  return urls.slice(0, tiles);
}
