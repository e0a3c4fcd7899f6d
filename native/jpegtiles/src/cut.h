// Cuts a rectangle out of baseline JPEG tiles without decoding a pixel: the same algorithm as
// src/image/tiles/jpeg-crop.ts (read there why it works), in C++ because its inner loop, parsing
// Huffman symbols, is most of a cut's CPU and runs about four times faster here. Plain C++ with
// no Node-API; quick enough (well under a millisecond for a viewer tile) to run on the caller's
// thread.
#pragma once

#include <cstdint>
#include <vector>

#include "render.h"

struct CutResult {
  std::vector<uint8_t> jpeg;
  // Where the asked-for rectangle starts in the cut (it is widened left and up to whole MCUs).
  uint32_t x = 0, y = 0;
};

// Cuts the rectangle (in pixels of the tiles joined in their grid, `across` tiles per row, row by
// row) out of the tiles. False when the tiles do not share one header, are not whole MCUs in a
// grid, use anything this coder leaves to libjpeg (progressive, arithmetic, a DC difference with
// no code in the table), are corrupt, or the rectangle is not inside them: the caller then decodes.
bool cut_tiles(const std::vector<TileBytes>& tiles, uint32_t across, uint32_t x, uint32_t y, uint32_t width, uint32_t height,
               CutResult* result);
