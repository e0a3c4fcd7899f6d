#include "decode.h"

#include <fcntl.h>
#include <openjpeg.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>
#include <vector>

#include "input_stream.h"

namespace {

const uint8_t kJp2Signature[12] = {0x00, 0x00, 0x00, 0x0c, 0x6a, 0x50, 0x20, 0x20, 0x0d, 0x0a, 0x87, 0x0a};
const uint8_t kCodestreamStart[4] = {0xff, 0x4f, 0xff, 0x51};

// OpenJPEG reports through callbacks; the first error is the telling one, and nothing may reach
// stderr (warnings and information are dropped).
void keep_first_error(const char* text, void* user) {
  auto* first = static_cast<std::string*>(user);
  if (!first->empty()) return;
  std::string message(text);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  *first = message.substr(0, 160);
}
void drop_message(const char*, void*) {}

DecodeResult fail(Failure failure, std::string message) {
  DecodeResult result;
  result.failure = failure;
  result.message = std::move(message);
  return result;
}

// OpenJPEG's message when it gave one, else ours.
DecodeResult undecodable(const std::string& first_error, const char* fallback) {
  return fail(Failure::kUndecodable, first_error.empty() ? fallback : first_error);
}

uint32_t ceil_div(uint32_t value, uint32_t divisor) {
  return static_cast<uint32_t>((static_cast<uint64_t>(value) + divisor - 1) / divisor);
}
uint32_t ceil_div_pow2(uint32_t value, uint32_t shift) {
  return static_cast<uint32_t>((static_cast<uint64_t>(value) + (uint64_t{1} << shift) - 1) >> shift);
}

// One decoded component, and for each output column and row the sample it contributes there:
// the identity for full-resolution components, nearest-neighbour replication for subsampled ones.
struct Channel {
  const opj_image_comp_t* comp;
  std::vector<uint32_t> column;
  std::vector<uint32_t> row;
};

// The sample index along one axis. Output position i sits at reduced reference-grid coordinate
// ceil(start / 2^reduce) + i; a component subsampled by `step` covers it with its sample
// (that coordinate) / step, counted from the first one the decode produced, which began at
// reference coordinate `decoded_start`.
std::vector<uint32_t> sample_index(uint32_t count, uint32_t start, uint32_t decoded_start, uint32_t reduce, uint32_t step,
                                   uint32_t samples) {
  std::vector<uint32_t> index(count);
  const uint32_t origin = ceil_div_pow2(start, reduce);
  const uint32_t first = ceil_div_pow2(ceil_div(decoded_start, step), reduce);
  for (uint32_t i = 0; i < count; ++i) {
    const uint32_t at = (origin + i) / step;
    const uint32_t k = at > first ? at - first : 0;
    index[i] = k < samples ? k : samples - 1;
  }
  return index;
}

// Where to start decoding so that a component subsampled by up to `step` has the sample covering
// the area's first output pixel: OpenJPEG starts each component at its own rounded-up
// coordinate, which for chroma can be the sample after it. Moves back to the previous multiple of
// step * 2^reduce, but not off the image; the extra columns or rows are then skipped.
uint32_t decode_start(uint32_t start, uint32_t image_start, uint32_t step, uint32_t reduce) {
  if (step == 1) return start;
  const uint64_t block = static_cast<uint64_t>(step) << reduce;
  const uint64_t aligned = start / block * block;
  return aligned < image_start ? image_start : static_cast<uint32_t>(aligned);
}

// sYCC to RGB with the coefficients and truncation of OpenJPEG's own tools (color.c), so the
// pixels match opj_decompress.
void sycc_to_rgb(int32_t* sample, uint32_t precision) {
  const int64_t offset = int64_t{1} << (precision - 1);
  const int64_t top = (int64_t{1} << precision) - 1;
  const int64_t y = sample[0], cb = sample[1] - offset, cr = sample[2] - offset;
  const int64_t rgb[3] = {
      y + static_cast<int64_t>(1.402 * static_cast<float>(cr)),
      y - static_cast<int64_t>(0.344 * static_cast<float>(cb) + 0.714 * static_cast<float>(cr)),
      y + static_cast<int64_t>(1.772 * static_cast<float>(cb)),
  };
  for (int c = 0; c < 3; ++c) sample[c] = static_cast<int32_t>(rgb[c] < 0 ? 0 : (rgb[c] > top ? top : rgb[c]));
}

// A sample of `precision` bits (already unsigned) to 8 bits: deeper ones rounded to their top
// 8 bits, shallower ones stretched to the full range.
uint8_t to_8_bits(int32_t value, uint32_t precision) {
  if (precision == 8) return static_cast<uint8_t>(value);
  if (precision > 8) {
    const uint32_t shift = precision - 8;
    const uint64_t rounded = (static_cast<uint64_t>(value) + (uint64_t{1} << (shift - 1))) >> shift;
    return static_cast<uint8_t>(rounded > 255 ? 255 : rounded);
  }
  const uint32_t top = (1u << precision) - 1;
  return static_cast<uint8_t>((static_cast<uint32_t>(value) * 255 + top / 2) / top);
}

bool is_sycc(const opj_image_t* image) {
  if (image->color_space == OPJ_CLRSPC_SYCC) return true;
  // A raw codestream says nothing about colour; like opj_decompress, take three components with
  // subsampled chroma for YCbCr.
  return image->color_space != OPJ_CLRSPC_SRGB && image->numcomps == 3 && image->comps[1].dx != 1;
}

// The area asked for and the (possibly larger) area decoded, on the reference grid.
struct Areas {
  uint32_t x0, y0;
  uint32_t decoded_x0, decoded_y0;
  uint32_t width, height;
  uint32_t reduce;
};

// Interleaves the decoded components into 8-bit pixels for the area asked for.
DecodeResult interleave(const opj_image_t* image, const Areas& area) {
  const uint32_t width = area.width, height = area.height;
  const uint32_t channels = image->numcomps;
  if (channels < 1 || channels > 4) return fail(Failure::kUndecodable, "the image does not decode to 1 to 4 channels");
  if (image->color_space == OPJ_CLRSPC_CMYK || image->color_space == OPJ_CLRSPC_EYCC) {
    return fail(Failure::kUndecodable, "the image's colour space (CMYK or e-sYCC) is not supported");
  }
  std::vector<Channel> planes;
  for (uint32_t c = 0; c < channels; ++c) {
    const opj_image_comp_t* comp = &image->comps[c];
    if (comp->data == nullptr || comp->w == 0 || comp->h == 0 || comp->prec < 1 || comp->prec > 31) {
      return fail(Failure::kUndecodable, "a component decoded without samples");
    }
    planes.push_back({comp, sample_index(width, area.x0, area.decoded_x0, area.reduce, comp->dx, comp->w),
                      sample_index(height, area.y0, area.decoded_y0, area.reduce, comp->dy, comp->h)});
  }
  const bool sycc = channels >= 3 && is_sycc(image);
  auto* data = static_cast<uint8_t*>(std::malloc(static_cast<size_t>(width) * height * channels));
  if (data == nullptr) return fail(Failure::kTooLarge, "not enough memory for the decoded area");
  uint8_t* out = data;
  int32_t sample[4];
  for (uint32_t y = 0; y < height; ++y) {
    for (uint32_t x = 0; x < width; ++x) {
      for (uint32_t c = 0; c < channels; ++c) {
        const Channel& plane = planes[c];
        const opj_image_comp_t* comp = plane.comp;
        int64_t value = comp->data[static_cast<size_t>(plane.row[y]) * comp->w + plane.column[x]];
        if (comp->sgnd) value += int64_t{1} << (comp->prec - 1);
        const int64_t top = (int64_t{1} << comp->prec) - 1;
        sample[c] = static_cast<int32_t>(value < 0 ? 0 : (value > top ? top : value));
      }
      if (sycc) sycc_to_rgb(sample, image->comps[0].prec);
      for (uint32_t c = 0; c < channels; ++c) *out++ = to_8_bits(sample[c], planes[c].comp->prec);
    }
  }
  DecodeResult result;
  result.width = width;
  result.height = height;
  result.channels = channels;
  result.data = data;
  return result;
}

}  // namespace

namespace {

// Opens the local file read-only for a stream, refusing one that is not `size` bytes long (replaced
// or cut since its version was taken: its bytes are not the ones asked for). -1 with `failure` set
// otherwise.
int open_unchanged(const std::string& path, uint64_t size, DecodeResult* failure) {
  int fd;
  do {
    fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  struct stat info;
  if (fd >= 0 && fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && static_cast<uint64_t>(info.st_size) == size) return fd;
  if (fd >= 0) close(fd);
  *failure = fail(Failure::kChanged, "the file is gone or no longer the size it had");
  return -1;
}

// The first bytes of the file, to tell a JP2 file from a raw codestream.
bool read_signature(const Input& input, int fd, uint8_t* out, size_t length) {
  if (input.size < length) return false;
  if (input.bytes != nullptr) {
    std::memcpy(out, input.bytes, length);
    return true;
  }
  ssize_t got;
  do {
    got = pread(fd, out, length, 0);
  } while (got < 0 && errno == EINTR);
  return got == static_cast<ssize_t>(length);
}

}  // namespace

Jp2Decoder::Jp2Decoder(Input input, uint32_t reduce, bool reusable, uint32_t threads)
    : input_(std::move(input)), reduce_(reduce), reusable_(reusable), threads_(threads) {}

Jp2Decoder::~Jp2Decoder() { release(); }

void Jp2Decoder::release() {
  if (image_ != nullptr) opj_image_destroy(image_);
  if (stream_ != nullptr) opj_stream_destroy(stream_);
  if (codec_ != nullptr) opj_destroy_codec(codec_);
  image_ = nullptr;
  stream_ = nullptr;
  codec_ = nullptr;
}

// Sets up the codec, reads the header, checks what the interleaving supports and sets the level.
DecodeResult Jp2Decoder::open() {
  if (reduce_ > 32) return fail(Failure::kBadArgument, "reduce is out of range");
  int fd = -1;
  DecodeResult failure;
  if (input_.bytes == nullptr && (fd = open_unchanged(input_.path, input_.size, &failure)) < 0) return failure;
  uint8_t start[sizeof kJp2Signature];
  OPJ_CODEC_FORMAT format = OPJ_CODEC_UNKNOWN;
  if (read_signature(input_, fd, start, sizeof kJp2Signature) && std::memcmp(start, kJp2Signature, sizeof kJp2Signature) == 0) {
    format = OPJ_CODEC_JP2;
  } else if (read_signature(input_, fd, start, sizeof kCodestreamStart) && std::memcmp(start, kCodestreamStart, sizeof kCodestreamStart) == 0) {
    format = OPJ_CODEC_J2K;
  }
  // From here the stream owns the file.
  stream_ = input_.bytes != nullptr ? open_memory_stream(input_.bytes, input_.size) : open_file_stream(fd, input_.size);
  if (stream_ == nullptr) return fail(Failure::kUndecodable, "OpenJPEG could not open the input");
  if (format == OPJ_CODEC_UNKNOWN) return fail(Failure::kUndecodable, "not a JPEG 2000 file");

  codec_ = opj_create_decompress(format);
  if (codec_ == nullptr) return fail(Failure::kUndecodable, "OpenJPEG could not start a decoder");
  opj_set_error_handler(codec_, keep_first_error, &first_error_);
  opj_set_warning_handler(codec_, drop_message, nullptr);
  opj_set_info_handler(codec_, drop_message, nullptr);
  opj_dparameters_t parameters;
  opj_set_default_decoder_parameters(&parameters);
  if (!opj_setup_decoder(codec_, &parameters) || !opj_codec_set_threads(codec_, static_cast<int>(threads_)) || !opj_decoder_set_strict_mode(codec_, OPJ_TRUE)) {
    return undecodable(first_error_, "OpenJPEG could not set up the decoder");
  }
  if (!opj_read_header(stream_, codec_, &image_)) return undecodable(first_error_, "the JPEG 2000 header cannot be read");
  if (image_->numcomps < 1 || image_->numcomps > 4) return fail(Failure::kUndecodable, "only images with 1 to 4 components are supported");
  if (image_->comps[0].dx != 1 || image_->comps[0].dy != 1) {
    return fail(Failure::kUndecodable, "images whose first component is subsampled are not supported");
  }
  if (image_->x1 > INT32_MAX || image_->y1 > INT32_MAX) return fail(Failure::kUndecodable, "the image's reference grid is too large");
  opj_codestream_info_v2_t* info = opj_get_cstr_info(codec_);
  if (info == nullptr) return fail(Failure::kUndecodable, "OpenJPEG could not describe the codestream");
  single_tile_ = info->tw == 1 && info->th == 1;
  // Kept apart: each decode narrows the image's bounds to its area.
  origin_x_ = image_->x0;
  origin_y_ = image_->y0;
  width_ = image_->x1 - image_->x0;
  height_ = image_->y1 - image_->y0;
  opj_destroy_cstr_info(&info);
  if (!opj_set_decoded_resolution_factor(codec_, reduce_)) {
    return fail(Failure::kBadArgument, "reduce is more than the image's resolution levels");
  }
  return DecodeResult{};
}

DecodeResult Jp2Decoder::decode(const Area& options) {
  if (broken_) return fail(Failure::kBadArgument, "this decoder failed before and cannot decode again");
  if (decodes_ > 0 && !(reusable_ && single_tile_)) return fail(Failure::kBadArgument, "this decoder cannot decode again");
  if (codec_ == nullptr) {
    DecodeResult opened = open();
    if (opened.failure != Failure::kNone) {
      // Nothing half-open is kept: the next decode (of a new decoder) starts from scratch.
      release();
      broken_ = true;
      return opened;
    }
  }
  const opj_image_t* image = image_;
  const uint32_t reduce = reduce_;
  if (options.x0 >= options.x1 || options.y0 >= options.y1 || options.x1 > width_ || options.y1 > height_) {
    return fail(Failure::kBadArgument, "the decode area is empty or outside the image");
  }
  // The area on the reference grid, then its size at the chosen resolution, as OpenJPEG
  // computes it (ISO 15444-1 B.5).
  const uint32_t x0 = origin_x_ + options.x0, y0 = origin_y_ + options.y0;
  const uint32_t x1 = origin_x_ + options.x1, y1 = origin_y_ + options.y1;
  const uint32_t width = ceil_div_pow2(x1, reduce) - ceil_div_pow2(x0, reduce);
  const uint32_t height = ceil_div_pow2(y1, reduce) - ceil_div_pow2(y0, reduce);
  if (width == 0 || height == 0) return fail(Failure::kBadArgument, "the decode area is empty at this resolution");
  if (static_cast<uint64_t>(width) * height > options.max_pixels) {
    return fail(Failure::kTooLarge, "the decode area has more pixels than allowed");
  }
  uint32_t step_x = 1, step_y = 1;
  for (uint32_t c = 0; c < image->numcomps; ++c) {
    step_x = image->comps[c].dx > step_x ? image->comps[c].dx : step_x;
    step_y = image->comps[c].dy > step_y ? image->comps[c].dy : step_y;
  }
  const Areas area{x0, y0, decode_start(x0, origin_x_, step_x, reduce), decode_start(y0, origin_y_, step_y, reduce), width, height, reduce};
  // From here OpenJPEG's state changes: a failure leaves this decoder unusable.
  decodes_ += 1;
  broken_ = true;
  if (!opj_set_decode_area(codec_, image_, static_cast<OPJ_INT32>(area.decoded_x0), static_cast<OPJ_INT32>(area.decoded_y0),
                           static_cast<OPJ_INT32>(x1), static_cast<OPJ_INT32>(y1))) {
    return undecodable(first_error_, "the decode area cannot be set");
  }
  if (!opj_decode(codec_, stream_, image_)) return undecodable(first_error_, "the JPEG 2000 image cannot be decoded");
  if (image->comps[0].w != ceil_div_pow2(x1, reduce) - ceil_div_pow2(area.decoded_x0, reduce) ||
      image->comps[0].h != ceil_div_pow2(y1, reduce) - ceil_div_pow2(area.decoded_y0, reduce)) {
    return fail(Failure::kUndecodable, "the image decoded to an unexpected size");
  }
  broken_ = false;
  return interleave(image, area);
}
