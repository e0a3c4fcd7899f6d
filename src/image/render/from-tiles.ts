import sharp, { type Sharp } from 'sharp';
import type { Rect } from '../../iiif/plan.js';
import type { RangeReader } from '../../source/range-reader.js';
import type { TiffPage } from '../tiles/tiff-layout.js';
import { standaloneJpeg } from '../tiles/jpeg-tile.js';
import { readStoredTile } from '../tiles/tile-reader.js';

/** The stored tiles under a region, joined into one image, and where the region lies in it. */
export interface JoinedTiles {
  image: Sharp;
  crop: Rect;
}

/**
 * Reads the stored JPEG tiles a region of one page covers, by range (adjacent tiles are
 * adjacent bytes, so the source fetches them together), and has libvips join them into one
 * image, a grid of whole tiles: stored tiles all have the page's tile size, edge tiles padded.
 * This is how a remote pyramid renders a region spanning tiles without being downloaded whole.
 * Undefined when a tile cannot be made a standalone JPEG (see jpeg-tile.ts): the caller then
 * reads the whole file.
 */
export async function joinStoredTiles(reader: RangeReader, page: TiffPage, region: Rect): Promise<JoinedTiles | undefined> {
  const { tileWidth, tileHeight } = page;
  const columns = Math.ceil(page.width / tileWidth);
  const [left, top] = [Math.floor(region.x / tileWidth), Math.floor(region.y / tileHeight)];
  const right = Math.floor((region.x + region.width - 1) / tileWidth);
  const bottom = Math.floor((region.y + region.height - 1) / tileHeight);
  const indices: number[] = [];
  for (let row = top; row <= bottom; row++) for (let column = left; column <= right; column++) indices.push(row * columns + column);
  const tiles = (await Promise.all(indices.map((index) => readStoredTile(reader, page, index)))).map((tile) => standaloneJpeg(tile, page));
  if (!tiles.every((tile) => tile !== undefined)) return undefined;
  const across = right - left + 1;
  const image = tiles.length === 1 ? sharp(tiles[0]) : sharp(tiles, { join: { across } });
  const crop = { x: region.x - left * tileWidth, y: region.y - top * tileHeight, width: region.width, height: region.height };
  return { image, crop };
}
