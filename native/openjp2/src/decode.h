// Decodes areas of one resolution level of a JPEG 2000 image (JP2 file or raw J2K codestream) to
// 8-bit interleaved pixels with OpenJPEG. Plain C++ with no Node-API, so it runs on a worker thread.
#pragma once

#include <openjpeg.h>

#include <cstddef>
#include <cstdint>
#include <string>

// The file to decode: `bytes` in memory, or else the local file at `path`; `size` bytes either way.
struct Input {
  const uint8_t* bytes = nullptr;
  std::string path;
  uint64_t size = 0;
};

struct Area {
  // In full-resolution pixels from the image's top-left corner; x1 and y1 are exclusive.
  uint32_t x0, y0, x1, y1;
  // The most pixels the decoded area may have at the decoder's resolution: refused beyond it,
  // before any pixel buffer is allocated.
  uint64_t max_pixels;
};

// kChanged: the local file is missing or no longer `size` bytes long.
enum class Failure { kNone, kUndecodable, kTooLarge, kBadArgument, kChanged };

struct DecodeResult {
  Failure failure = Failure::kNone;
  // A short reason when `failure` is set (OpenJPEG's first error message, or ours).
  std::string message;
  uint32_t width = 0, height = 0, channels = 0;
  // width * height * channels bytes from malloc, owned by the caller (free) on success.
  uint8_t* data = nullptr;
};

// One image at one resolution level (`reduce` levels discarded). The first decode reads the
// header and, for an image of a single tile, that tile's codestream into OpenJPEG; when `reusable`,
// later decodes of other areas start from what it read (OpenJPEG >= 2.3 keeps a single tile's
// data between opj_set_decode_area + opj_decode calls on one codec) instead of reading and
// allocating it all again. The level cannot change on a codec once it has decoded: OpenJPEG 2.5
// then fails ("Failed to decode the codestream in the JP2 file"; GDAL restarts its codec too).
// Each decode runs on `threads` OpenJPEG threads (its code-blocks and wavelet rows split between
// them); they are started with the codec, by the thread that first decodes, whose scheduling
// priority they inherit. One decode at a time; any thread.
class Jp2Decoder {
 public:
  Jp2Decoder(Input input, uint32_t reduce, bool reusable, uint32_t threads);
  ~Jp2Decoder();
  Jp2Decoder(const Jp2Decoder&) = delete;
  Jp2Decoder& operator=(const Jp2Decoder&) = delete;

  DecodeResult decode(const Area& area);

 private:
  DecodeResult open();
  void release();

  Input input_;
  uint32_t reduce_;
  bool reusable_;
  uint32_t threads_;
  opj_codec_t* codec_ = nullptr;
  opj_stream_t* stream_ = nullptr;
  opj_image_t* image_ = nullptr;
  std::string first_error_;
  // The image's origin and size on the reference grid, from its header.
  uint32_t origin_x_ = 0, origin_y_ = 0, width_ = 0, height_ = 0;
  // The image has one tile, so OpenJPEG can decode it again.
  bool single_tile_ = false;
  // Decodes run, and whether one failed inside OpenJPEG (whose state is then not to be trusted).
  uint32_t decodes_ = 0;
  bool broken_ = false;
};
