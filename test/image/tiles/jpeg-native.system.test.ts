import sharp from 'sharp';
import { describe, expect, it } from 'vitest';
import { IiifError } from '../../../src/errors.js';
import type { Rect } from '../../../src/iiif/plan.js';
import { nativeJpegAvailable, renderJpegTiles } from '../../../src/image/tiles/jpeg-native.js';
import type { TileSpot } from '../../../src/image/tiles/locate.js';
import type { TiffPage } from '../../../src/image/tiles/tiff-layout.js';
import { decode, difference, photo } from './foreign-pyramids.js';

const TILE = 256;

/** A 2 × 2 grid of stored tiles of the photo, as JPEGs the way sharp writes them. */
async function grid(grey: boolean): Promise<{ tiles: Buffer[]; joined: () => sharp.Sharp }> {
  const pixels = await photo(2 * TILE, 2 * TILE).raw().toBuffer();
  const whole = () => sharp(pixels, { raw: { width: 2 * TILE, height: 2 * TILE, channels: 3 } });
  const tiles: Buffer[] = [];
  for (const [left, top] of [[0, 0], [TILE, 0], [0, TILE], [TILE, TILE]] as const) {
    let tile = whole().extract({ left, top, width: TILE, height: TILE });
    if (grey) tile = tile.toColourspace('b-w');
    tiles.push(await tile.jpeg({ quality: 90 }).toBuffer());
  }
  // libvips joins grey tiles with an alpha channel: the references drop it.
  return { tiles, joined: () => sharp(tiles, { join: { across: 2 } }) };
}

function spot(grey: boolean, crop: Rect): TileSpot {
  const page: TiffPage = {
    width: 2 * TILE,
    height: 2 * TILE,
    tileWidth: TILE,
    tileHeight: TILE,
    compression: 7,
    photometric: grey ? 1 : 6,
    samplesPerPixel: grey ? 1 : 3,
    bitsPerSample: 8,
    sampleFormat: 1,
    extraSamples: 0,
    planarConfig: 1,
    tileOffsets: [],
    tileByteCounts: [],
    jpegTables: undefined,
    orientation: 1,
  };
  return { page, indexes: [0, 1, 2, 3], across: 2, crop, corner: false, exact: false };
}

/** The frame header's marker: C0 is baseline sequential. */
function frameMarker(jpeg: Buffer): number | undefined {
  for (let at = 2; at + 4 <= jpeg.length; at += 2 + jpeg.readUInt16BE(at + 2)) {
    const marker = jpeg[at + 1]!;
    if (marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc) return marker;
  }
  return undefined;
}

describe('renderJpegTiles (native libjpeg-turbo)', () => {
  it('is built here', () => {
    expect(nativeJpegAvailable()).toBe(true);
  });

  for (const grey of [false, true]) {
    it(`renders a region across four ${grey ? 'grey' : 'colour'} tiles, off the block grid, to the pixels libjpeg decodes there`, async () => {
      const { tiles, joined } = await grid(grey);
      const crop = { x: 101, y: 37, width: 300, height: 299 };
      const jpeg = await renderJpegTiles(tiles, spot(grey, crop), 85, 1_000_000);
      expect(frameMarker(jpeg)).toBe(0xc0);
      const rendered = await decode(jpeg);
      expect([rendered.width, rendered.height, rendered.channels]).toEqual([300, 299, grey ? 1 : 3]);
      // The stored tiles' own decode, and what the sharp path makes of the same request.
      const colourspace = grey ? 'b-w' : 'srgb';
      const stored = await decode(await joined().removeAlpha().toColourspace(colourspace).png().toBuffer());
      const bySharp = await decode(await joined().removeAlpha().extract({ left: crop.x, top: crop.y, width: crop.width, height: crop.height }).toColourspace(colourspace).jpeg({ quality: 85, optimiseCoding: false }).toBuffer());
      // One encode at quality 85 away from the stored pixels, as sharp's answer is.
      const ours = difference(rendered, stored, crop.x, crop.y).mean;
      expect(ours).toBeLessThan(difference(bySharp, stored, crop.x, crop.y).mean + 0.25);
      expect(difference(rendered, bySharp, 0, 0).mean).toBeLessThan(1.5);
    });
  }

  it('refuses a damaged tile with 422, never a grey patch', async () => {
    const { tiles } = await grid(false);
    // The last tile loses the second half of its entropy-coded data but keeps its end marker.
    const last = tiles[3]!;
    tiles[3] = Buffer.concat([last.subarray(0, Math.floor(last.length / 2)), Buffer.from([0xff, 0xd9])]);
    const error = await renderJpegTiles(tiles, spot(false, { x: 200, y: 200, width: 300, height: 300 }), 85, 1_000_000).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IiifError);
    expect((error as IiifError).statusCode).toBe(422);
  });

  it('refuses a region beyond its pixel budget with 413 before decoding', async () => {
    const { tiles } = await grid(false);
    const error = await renderJpegTiles(tiles, spot(false, { x: 10, y: 10, width: 300, height: 300 }), 85, 300 * 300 - 1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(IiifError);
    expect((error as IiifError).statusCode).toBe(413);
  });
});
