#include "render.h"

#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>

// jpeglib.h needs FILE and size_t declared first.
#include <jpeglib.h>

namespace {

// libjpeg reports errors through error_exit, which must not return: it jumps back to the setjmp
// of the call that started the work. Its warnings (corrupt data it would paper over with grey)
// are errors here too, as they are for sharp (failOn 'warning'), so a damaged tile is a 422 and
// never a grey patch.
struct ErrorManager {
  jpeg_error_mgr base;
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
};

[[noreturn]] void error_exit(j_common_ptr info) {
  auto* errors = reinterpret_cast<ErrorManager*>(info->err);
  (*info->err->format_message)(info, errors->message);
  std::longjmp(errors->jump, 1);
}

void emit_message(j_common_ptr info, int level) {
  // Level −1 is a warning (corrupt data); higher levels are trace messages.
  if (level < 0) error_exit(info);
}

void output_message(j_common_ptr) {}

// Our own checks fail the same way as libjpeg's.
[[noreturn]] void fail(j_decompress_ptr info, const char* why) {
  auto* errors = reinterpret_cast<ErrorManager*>(info->err);
  std::snprintf(errors->message, sizeof errors->message, "%s", why);
  std::longjmp(errors->jump, 1);
}

void use_errors(ErrorManager* errors) {
  jpeg_std_error(&errors->base);
  errors->base.error_exit = error_exit;
  errors->base.emit_message = emit_message;
  errors->base.output_message = output_message;
  errors->message[0] = '\0';
}

// Channels of the raster and the response: grey pages give grey JPEGs.
uint32_t channels_of(const RenderRequest& request) { return request.colour == Colour::kGrey ? 1 : 3; }

// Rows read per jpeg_read_scanlines call: enough for a whole iMCU row of any sampling.
constexpr uint32_t kRowsPerRead = 16;

// What one tile contributes: its part of the rectangle, in the tile's pixels, and where that
// part goes in the raster.
struct Piece {
  uint32_t left, top, right, bottom;
  uint32_t to_x, to_y;
};

// Decodes `piece` of one tile into the raster (`stride` bytes a row). Reuses `info` (created by
// the caller, aborted after each tile) and `rows`, a scratch buffer of kRowsPerRead rows as wide
// as a tile. Errors jump to the caller's setjmp.
void decode_piece(jpeg_decompress_struct* info, const TileBytes& tile, const RenderRequest& request, const Piece& piece,
                  uint8_t* raster, size_t stride, uint8_t* rows) {
  jpeg_mem_src(info, tile.bytes, static_cast<unsigned long>(tile.size));
  jpeg_read_header(info, TRUE);
  if (info->image_width != request.tile_width || info->image_height != request.tile_height) {
    fail(info, "a tile is not the size of the page's tiles");
  }
  const bool grey = request.colour == Colour::kGrey;
  if (info->num_components != (grey ? 1 : 3)) fail(info, "a tile has other channels than its page");
  // The page's Photometric tag decides, as in libtiff, whatever markers the tile carries.
  info->jpeg_color_space = grey ? JCS_GRAYSCALE : request.colour == Colour::kRgb ? JCS_RGB : JCS_YCbCr;
  info->out_color_space = grey ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(info);
  // Columns: only the iMCU columns under the piece are transformed (libjpeg widens the span to
  // them and says where it starts).
  JDIMENSION first_column = piece.left;
  JDIMENSION columns = piece.right - piece.left;
  jpeg_crop_scanline(info, &first_column, &columns);
  // Rows above: entropy-decoded (a Huffman stream cannot be skipped) but not transformed.
  if (piece.top > 0 && jpeg_skip_scanlines(info, piece.top) != piece.top) fail(info, "a tile ended early");
  const size_t channels = channels_of(request);
  const size_t offset = (piece.left - first_column) * channels;
  const size_t length = static_cast<size_t>(piece.right - piece.left) * channels;
  JSAMPROW pointers[kRowsPerRead];
  for (uint32_t i = 0; i < kRowsPerRead; i++) pointers[i] = rows + static_cast<size_t>(i) * request.tile_width * channels;
  uint32_t row = piece.top;
  while (row < piece.bottom) {
    const JDIMENSION wanted = piece.bottom - row < kRowsPerRead ? piece.bottom - row : kRowsPerRead;
    const JDIMENSION read = jpeg_read_scanlines(info, pointers, wanted);
    if (read == 0) fail(info, "a tile ended early");
    for (JDIMENSION i = 0; i < read; i++) {
      uint8_t* to = raster + static_cast<size_t>(piece.to_y + row - piece.top + i) * stride + static_cast<size_t>(piece.to_x) * channels;
      std::memcpy(to, rows + static_cast<size_t>(i) * request.tile_width * channels + offset, length);
    }
    row += read;
  }
  // The rows below are never read.
  jpeg_abort_decompress(info);
}

// Every tile's piece of the rectangle, in grid order; false when the request does not describe
// a rectangle within the grid.
bool pieces_of(const RenderRequest& request, std::vector<Piece>* pieces) {
  const size_t count = request.tiles.size();
  if (request.across == 0 || count == 0 || count % request.across != 0 || request.tile_width == 0 ||
      request.tile_height == 0 || request.width == 0 || request.height == 0) {
    return false;
  }
  const uint64_t down = count / request.across;
  if (static_cast<uint64_t>(request.x) + request.width > static_cast<uint64_t>(request.across) * request.tile_width ||
      static_cast<uint64_t>(request.y) + request.height > down * request.tile_height) {
    return false;
  }
  for (size_t index = 0; index < count; index++) {
    const uint64_t left = static_cast<uint64_t>(index % request.across) * request.tile_width;
    const uint64_t top = static_cast<uint64_t>(index / request.across) * request.tile_height;
    const uint64_t x0 = request.x > left ? request.x : left;
    const uint64_t y0 = request.y > top ? request.y : top;
    const uint64_t x1 = request.x + request.width < left + request.tile_width ? request.x + request.width : left + request.tile_width;
    const uint64_t y1 = request.y + request.height < top + request.tile_height ? request.y + request.height : top + request.tile_height;
    // A tile outside the rectangle is a grid the caller should not have sent.
    if (x0 >= x1 || y0 >= y1) return false;
    pieces->push_back(Piece{static_cast<uint32_t>(x0 - left), static_cast<uint32_t>(y0 - top), static_cast<uint32_t>(x1 - left),
                            static_cast<uint32_t>(y1 - top), static_cast<uint32_t>(x0 - request.x),
                            static_cast<uint32_t>(y0 - request.y)});
  }
  return true;
}

// Encodes the raster as a baseline JPEG: sharp's settings (4:2:0 chroma for colour, standard
// Huffman tables, JFIF marker, the same quality scale).
void encode(jpeg_compress_struct* info, const RenderRequest& request, uint8_t* raster, uint8_t** jpeg, unsigned long* size) {
  jpeg_mem_dest(info, jpeg, size);
  info->image_width = request.width;
  info->image_height = request.height;
  info->input_components = static_cast<int>(channels_of(request));
  info->in_color_space = request.colour == Colour::kGrey ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(info);
  jpeg_set_quality(info, request.quality, TRUE);
  jpeg_start_compress(info, TRUE);
  const size_t stride = static_cast<size_t>(request.width) * channels_of(request);
  while (info->next_scanline < info->image_height) {
    JSAMPROW row = raster + static_cast<size_t>(info->next_scanline) * stride;
    jpeg_write_scanlines(info, &row, 1);
  }
  jpeg_finish_compress(info);
}

}  // namespace

RenderResult render_tiles(const RenderRequest& request) {
  RenderResult result;
  std::vector<Piece> pieces;
  if (request.colour > Colour::kGrey || request.quality < 1 || request.quality > 100 ||
      !pieces_of(request, &pieces)) {
    result.failure = Failure::kBadArgument;
    result.message = "the tiles, rectangle or settings are not a render";
    return result;
  }
  const uint64_t pixels = static_cast<uint64_t>(request.width) * request.height;
  if (pixels > request.max_pixels) {
    result.failure = Failure::kTooLarge;
    result.message = "the region has more pixels than one render may hold";
    return result;
  }
  // Everything the error jump must release is plain data declared before setjmp (the flags set
  // after it volatile, the output pointer written only by libjpeg through its address); nothing
  // between it and the calls that may jump has a destructor.
  ErrorManager errors;
  jpeg_decompress_struct decompress;
  jpeg_compress_struct compress;
  volatile bool decompressing = false;
  volatile bool compressing = false;
  uint8_t* raster = static_cast<uint8_t*>(std::malloc(pixels * channels_of(request)));
  uint8_t* rows = static_cast<uint8_t*>(std::malloc(static_cast<size_t>(kRowsPerRead) * request.tile_width * channels_of(request)));
  uint8_t* jpeg = nullptr;
  unsigned long size = 0;
  if (raster == nullptr || rows == nullptr) {
    std::free(raster);
    std::free(rows);
    result.failure = Failure::kTooLarge;
    result.message = "out of memory for the raster";
    return result;
  }
  use_errors(&errors);
  if (setjmp(errors.jump) == 0) {
    decompress.err = &errors.base;
    jpeg_create_decompress(&decompress);
    decompressing = true;
    // The shared tables stay loaded for every tile read after them (an abbreviated stream).
    if (request.tables.size > 0) {
      jpeg_mem_src(&decompress, request.tables.bytes, static_cast<unsigned long>(request.tables.size));
      if (jpeg_read_header(&decompress, FALSE) != JPEG_HEADER_TABLES_ONLY) fail(&decompress, "the page's JPEG tables are not a tables-only stream");
    }
    const size_t stride = static_cast<size_t>(request.width) * channels_of(request);
    for (size_t i = 0; i < pieces.size(); i++) decode_piece(&decompress, request.tiles[i], request, pieces[i], raster, stride, rows);
    jpeg_destroy_decompress(&decompress);
    decompressing = false;
    compress.err = &errors.base;
    jpeg_create_compress(&compress);
    compressing = true;
    encode(&compress, request, raster, &jpeg, &size);
    result.jpeg = jpeg;
    result.size = size;
    jpeg = nullptr;
  } else {
    result.failure = Failure::kUndecodable;
    result.message = errors.message;
  }
  if (decompressing) jpeg_destroy_decompress(&decompress);
  if (compressing) jpeg_destroy_compress(&compress);
  std::free(jpeg);
  std::free(raster);
  std::free(rows);
  return result;
}
