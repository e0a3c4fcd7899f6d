// Renders a rectangle of a grid of stored JPEG tiles into one JPEG with libjpeg-turbo: each tile
// the rectangle touches is decoded only as far as it must be (rows above it are entropy-decoded
// and skipped, columns beside it are not transformed, rows below it are not read), straight into
// one raster, which is then encoded. Plain C++ with no Node-API, so it runs on a worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

struct TileBytes {
  const uint8_t* bytes;
  size_t size;
};

// How the page's tiles turn into pixels, from its TIFF tags, as libtiff decodes them: RGB as
// stored (no colour transform), YCbCr converted to RGB, or grey. The tiles' own markers (JFIF,
// Adobe) do not count.
enum class Colour { kRgb = 0, kYcbcr = 1, kGrey = 2 };

struct RenderRequest {
  // The page's stored JPEG tiles as they lie in the file, row by row, `across` per row; every
  // one is tile_width × tile_height.
  std::vector<TileBytes> tiles;
  // The page's JPEGTables (an abbreviated stream of quantisation and Huffman tables the tiles
  // share), or empty.
  TileBytes tables;
  Colour colour;
  uint32_t across;
  uint32_t tile_width, tile_height;
  // The rectangle, in pixels of the tiles joined in their grid; x + width and y + height are
  // within the grid.
  uint32_t x, y, width, height;
  // JPEG quality of the output, 1–100 (4:2:0 chroma and standard Huffman tables, as sharp writes).
  int quality;
  // The most pixels the raster may have: refused beyond it, before it is allocated.
  uint64_t max_pixels;
};

enum class Failure { kNone, kUndecodable, kTooLarge, kBadArgument };

struct RenderResult {
  Failure failure = Failure::kNone;
  // A short reason when `failure` is set (libjpeg's message, or ours).
  std::string message;
  // The JPEG, from malloc, owned by the caller (free) on success.
  uint8_t* jpeg = nullptr;
  size_t size = 0;
};

RenderResult render_tiles(const RenderRequest& request);
