// Decodes part of a JPEG 2000 image (JP2 file or raw J2K codestream) to 8-bit interleaved pixels
// with OpenJPEG. Plain C++ with no Node-API, so it runs on a worker thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

struct DecodeOptions {
  // Resolution levels to discard: 0 is full size, each level halves both sides.
  uint32_t reduce;
  // The area to decode, in full-resolution pixels from the image's top-left corner; x1 and y1
  // are exclusive.
  uint32_t x0, y0, x1, y1;
  // The most pixels the decoded area may have at the chosen resolution: refused beyond it,
  // before any pixel buffer is allocated.
  uint64_t max_pixels;
};

enum class Failure { kNone, kUndecodable, kTooLarge, kBadArgument };

struct DecodeResult {
  Failure failure = Failure::kNone;
  // A short reason when `failure` is set (OpenJPEG's first error message, or ours).
  std::string message;
  uint32_t width = 0, height = 0, channels = 0;
  // width * height * channels bytes from malloc, owned by the caller (free) on success.
  uint8_t* data = nullptr;
};

DecodeResult decode_jpeg2000(const uint8_t* bytes, size_t size, const DecodeOptions& options);
