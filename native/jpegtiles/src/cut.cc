#include "cut.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <memory>

// Names and structure follow src/image/tiles/jpeg-crop.ts, whose comments explain each step.
// Built without C++ exceptions: a stream this coder cannot handle sets `failed` and unwinds by
// return values.

namespace {

constexpr int kFastBits = 9;
constexpr int kSkipBits = 12;

struct HuffmanTable {
  // 9-bit prefix → symbol << 8 | code length, or 0 when the code is longer.
  uint16_t fast[1 << kFastBits] = {};
  // 12-bit prefix → symbol << 4 | code length + extra bits, or 0 when they take more than 12.
  uint16_t skip[1 << kSkipBits] = {};
  int32_t max_code[18];
  int32_t min_code[17] = {};
  int32_t first_value[17] = {};
  uint8_t values[256] = {};
  uint16_t code[256] = {};
  uint8_t code_length[256] = {};
};

struct ScanComponent {
  int h, v;
  const HuffmanTable* dc;
  const HuffmanTable* ac;
};

struct Layout {
  uint32_t width = 0, height = 0;
  size_t size_offset = 0, data_offset = 0;
  std::vector<ScanComponent> components;
  uint32_t mcu_width = 0, mcu_height = 0;
  uint32_t restart_interval = 0;
  size_t restart_offset = 0;
  // The tables the components point at, by class << 4 | id.
  std::map<int, std::unique_ptr<HuffmanTable>> tables;
};

// Canonical Huffman codes from the code-length counts (JPEG Annex C); false when they overflow.
bool build_table(const uint8_t* counts, const uint8_t* values, int total, HuffmanTable* table) {
  std::fill(std::begin(table->max_code), std::end(table->max_code), -1);
  std::memcpy(table->values, values, static_cast<size_t>(total));
  int code = 0;
  int index = 0;
  for (int length = 1; length <= 16; length++) {
    const int n = counts[length - 1];
    table->first_value[length] = index;
    table->min_code[length] = code;
    for (int i = 0; i < n; i++, index++, code++) {
      const int symbol = values[index];
      table->code[symbol] = static_cast<uint16_t>(code);
      table->code_length[symbol] = static_cast<uint8_t>(length);
      if (length <= kFastBits) {
        const int shift = kFastBits - length;
        std::fill(table->fast + (code << shift), table->fast + ((code + 1) << shift), static_cast<uint16_t>((symbol << 8) | length));
      }
      const int bits = length + (symbol & 15);
      if (bits <= kSkipBits) {
        const int shift = kSkipBits - length;
        std::fill(table->skip + (code << shift), table->skip + ((code + 1) << shift), static_cast<uint16_t>((symbol << 4) | bits));
      }
    }
    if (n > 0) table->max_code[length] = code - 1;
    if (code > 1 << length) return false;
    code <<= 1;
  }
  table->max_code[17] = 0x7fffffff;
  return true;
}

uint32_t be16(const uint8_t* at) { return (static_cast<uint32_t>(at[0]) << 8) | at[1]; }

bool read_tables(const uint8_t* jpeg, size_t at, size_t end, Layout* layout) {
  while (at < end) {
    const int key = jpeg[at];
    if (key >> 4 > 1 || (key & 15) > 3 || at + 17 > end) return false;
    const uint8_t* counts = jpeg + at + 1;
    int total = 0;
    for (int i = 0; i < 16; i++) total += counts[i];
    if (total > 256 || at + 17 + total > end) return false;
    auto table = std::make_unique<HuffmanTable>();
    if (!build_table(counts, jpeg + at + 17, total, table.get())) return false;
    layout->tables[key] = std::move(table);
    at += 17 + static_cast<size_t>(total);
  }
  return true;
}

// The tile's layout up to its scan; false for anything but one interleaved baseline scan.
bool read_layout(const uint8_t* jpeg, size_t size, Layout* layout) {
  if (size < 4 || jpeg[0] != 0xff || jpeg[1] != 0xd8) return false;
  struct Sampling { int id, h, v; };
  std::vector<Sampling> frame;
  bool framed = false;
  size_t offset = 2;
  while (offset + 4 <= size) {
    if (jpeg[offset] != 0xff) return false;
    const int marker = jpeg[offset + 1];
    if (marker == 0xff) {
      offset++;
      continue;
    }
    const size_t length = be16(jpeg + offset + 2);
    const size_t body = offset + 4;
    const size_t end = offset + 2 + length;
    if (length < 2 || end > size) return false;
    if (marker == 0xc4) {
      if (!read_tables(jpeg, body, end, layout)) return false;
    } else if (marker == 0xc0 || marker == 0xc1) {
      if (framed || body + 6 > end) return false;
      const int count = jpeg[body + 5];
      layout->height = be16(jpeg + body + 1);
      layout->width = be16(jpeg + body + 3);
      layout->size_offset = body + 1;
      if (jpeg[body] != 8 || body + 6 + static_cast<size_t>(count) * 3 > end || count < 1 || count > 4 || layout->height == 0) return false;
      for (int i = 0; i < count; i++) {
        const size_t at = body + 6 + static_cast<size_t>(i) * 3;
        const int h = jpeg[at + 1] >> 4, v = jpeg[at + 1] & 15;
        if (h < 1 || h > 4 || v < 1 || v > 4) return false;
        frame.push_back(Sampling{jpeg[at], h, v});
      }
      framed = true;
    } else if (marker >= 0xc2 && marker <= 0xcf) {
      return false;  // progressive, lossless, hierarchical, arithmetic
    } else if (marker == 0xdd) {
      if (body + 2 > end) return false;
      layout->restart_interval = be16(jpeg + body);
      layout->restart_offset = body;
    } else if (marker == 0xda) {
      if (!framed) return false;
      const size_t count = jpeg[body];
      if (count != frame.size() || body + 1 + count * 2 + 3 != end) return false;
      const size_t spectral = body + 1 + count * 2;
      if (jpeg[spectral] != 0 || jpeg[spectral + 1] != 63 || jpeg[spectral + 2] != 0) return false;
      int h_max = 1, v_max = 1;
      for (const Sampling& s : frame) h_max = std::max(h_max, s.h), v_max = std::max(v_max, s.v);
      for (size_t i = 0; i < count; i++) {
        const int id = jpeg[body + 1 + i * 2];
        const int selectors = jpeg[body + 2 + i * 2];
        auto sampling = std::find_if(frame.begin(), frame.end(), [id](const Sampling& s) { return s.id == id; });
        auto dc = layout->tables.find(selectors >> 4);
        auto ac = layout->tables.find(0x10 | (selectors & 15));
        if (sampling == frame.end() || dc == layout->tables.end() || ac == layout->tables.end()) return false;
        const bool single = count == 1;
        layout->components.push_back(ScanComponent{single ? 1 : sampling->h, single ? 1 : sampling->v, dc->second.get(), ac->second.get()});
      }
      layout->data_offset = end;
      layout->mcu_width = count == 1 ? 8 : 8 * static_cast<uint32_t>(h_max);
      layout->mcu_height = count == 1 ? 8 : 8 * static_cast<uint32_t>(v_max);
      return true;
    } else if (marker == 0xd9) {
      return false;
    }
    offset = end;
  }
  return false;
}

// A scan's entropy-coded data without its byte stuffing (then zeros), and where its restart
// intervals after the first start.
struct Entropy {
  std::vector<uint8_t> data;
  size_t length = 0;
  std::vector<size_t> restarts;
};

void unstuff(const uint8_t* jpeg, size_t size, size_t start, Entropy* entropy) {
  entropy->data.assign(size - start + 8, 0);
  uint8_t* data = entropy->data.data();
  size_t length = 0;
  size_t at = start;
  for (;;) {
    const void* found = at < size ? std::memchr(jpeg + at, 0xff, size - at) : nullptr;
    const size_t stop = found ? static_cast<size_t>(static_cast<const uint8_t*>(found) - jpeg) : size;
    std::memcpy(data + length, jpeg + at, stop - at);
    length += stop - at;
    if (!found || stop + 1 >= size) break;
    const int next = jpeg[stop + 1];
    if (next == 0) data[length++] = 0xff;
    else if (next >= 0xd0 && next <= 0xd7) entropy->restarts.push_back(length);
    else if (next != 0xff) break;
    at = stop + (next == 0xff ? 1 : 2);
  }
  entropy->length = length;
}

int32_t extend(uint32_t bits, int category) {
  return category > 0 && bits < (1u << (category - 1)) ? static_cast<int32_t>(bits) - (1 << category) + 1 : static_cast<int32_t>(bits);
}

class BitReader {
 public:
  explicit BitReader(const Entropy* entropy) : entropy_(entropy) {
    end_ = entropy->restarts.empty() ? entropy->length : entropy->restarts[0];
  }

  // Where the data read so far ends, in bits from the start of the data.
  uint64_t bit = 0;
  bool failed = false;

  bool check_bounds() {
    if (position_ * 8 - count_ > end_ * 8) failed = true;
    return !failed;
  }

  void restart() {
    if (!check_bounds()) return;
    if (interval_ >= entropy_->restarts.size()) {
      failed = true;
      return;
    }
    const size_t next = entropy_->restarts[interval_++];
    position_ = next;
    end_ = interval_ < entropy_->restarts.size() ? entropy_->restarts[interval_] : entropy_->length;
    bits_ = 0;
    count_ = 0;
    bit = next * 8;
  }

  // Reads past one MCU, following its DC predictors.
  void skip_mcu(const std::vector<ScanComponent>& components, int32_t* dc) {
    uint32_t bits = bits_;
    int count = count_;
    size_t position = position_;
    for (size_t c = 0; c < components.size(); c++) {
      const ScanComponent& component = components[c];
      for (int block = component.h * component.v; block > 0; block--) {
        const HuffmanTable* table = component.dc;
        for (int k = 0; k < 64; table = component.ac) {
          if (count < 16) fill(&bits, &count, &position);
          if (k > 0) {
            const uint16_t skip = table->skip[(bits >> (count - kSkipBits)) & ((1 << kSkipBits) - 1)];
            if (skip != 0) {
              count -= skip & 15;
              const int symbol = skip >> 4;
              if ((symbol & 15) == 0 && symbol != 0xf0) break;
              k += (symbol >> 4) + 1;
              if (k > 64) return fail();
              continue;
            }
          }
          const uint32_t peek = (bits >> (count - 16)) & 0xffff;
          const uint16_t fast = table->fast[peek >> (16 - kFastBits)];
          int symbol;
          if (fast != 0) {
            symbol = fast >> 8;
            count -= fast & 0xff;
          } else {
            symbol = slow_symbol(table, peek);
            if (symbol < 0) return fail();
            count -= table->code_length[symbol];
          }
          const int size = symbol & 15;
          if (count < size) fill(&bits, &count, &position);
          count -= size;
          if (k == 0) {
            if (size > 11) return fail();
            if (size > 0) dc[c] += extend((bits >> count) & ((1u << size) - 1), size);
            k = 1;
          } else {
            if (size == 0 && symbol != 0xf0) break;
            k += (symbol >> 4) + 1;
            if (k > 64) return fail();
          }
        }
      }
    }
    bit += (position - position_) * 8 - static_cast<uint64_t>(count - count_);
    bits_ = bits;
    count_ = count;
    position_ = position;
  }

  // A symbol and the extra bits after it: symbol << 16 | bits; -1 for a code not in the table.
  int32_t decode_with_bits(const HuffmanTable* table) {
    const uint32_t peek = peek16();
    const uint16_t fast = table->fast[peek >> (16 - kFastBits)];
    const int length = fast & 0xff;
    const int size = (fast >> 8) & 15;
    if (fast != 0 && length + size <= 16) {
      skip(length + size);
      return static_cast<int32_t>(((fast >> 8) << 16) | ((peek >> (16 - length - size)) & ((1u << size) - 1)));
    }
    const int symbol = fast != 0 ? fast >> 8 : slow_symbol(table, peek);
    if (symbol < 0) return -1;
    skip(fast != 0 ? length : table->code_length[symbol]);
    return (symbol << 16) | static_cast<int32_t>(read(symbol & 15));
  }

 private:
  // Makes at least 16 bits available; past the data they are zeros (checkBounds refuses a stream
  // that used them).
  void fill(uint32_t* bits, int* count, size_t* position) const {
    const uint8_t* data = entropy_->data.data();
    const size_t size = entropy_->data.size();
    for (; *count <= 24; *count += 8) {
      const uint32_t byte = *position < size ? data[*position] : 0;
      (*position)++;
      *bits = (*bits << 8) | byte;
    }
  }

  uint32_t peek16() {
    if (count_ < 16) fill(&bits_, &count_, &position_);
    return (bits_ >> (count_ - 16)) & 0xffff;
  }

  void skip(int length) {
    count_ -= length;
    bit += static_cast<uint64_t>(length);
  }

  uint32_t read(int length) {
    if (length == 0) return 0;
    const uint32_t value = peek16() >> (16 - length);
    skip(length);
    return value;
  }

  static int slow_symbol(const HuffmanTable* table, uint32_t peek) {
    int length = kFastBits + 1;
    int32_t code = static_cast<int32_t>(peek >> (16 - length));
    while (code > table->max_code[length]) {
      length++;
      if (length > 16) return -1;
      code = static_cast<int32_t>(peek >> (16 - length));
    }
    const int index = table->first_value[length] + code - table->min_code[length];
    return index >= 0 && index < 256 ? table->values[index] : -1;
  }

  void fail() { failed = true; }

  const Entropy* entropy_;
  uint32_t bits_ = 0;
  int count_ = 0;
  size_t position_ = 0;
  size_t end_;
  size_t interval_ = 0;
};

class BitWriter {
 public:
  explicit BitWriter(std::vector<uint8_t>* out) : out_(out) {}

  // `length` ≤ 24.
  void write(uint32_t value, int length) {
    bits_ = (bits_ << length) | value;
    count_ += length;
    while (count_ >= 8) {
      count_ -= 8;
      const uint8_t byte = static_cast<uint8_t>(bits_ >> count_);
      out_->push_back(byte);
      if (byte == 0xff) out_->push_back(0);
    }
    bits_ &= (1u << count_) - 1;
  }

  // Bits `from` to `to` of `data` (from its first byte's highest bit) as they are.
  void copy_bits(const uint8_t* data, uint64_t from, uint64_t to) {
    uint64_t at = from;
    const int head = static_cast<int>(std::min<uint64_t>((8 - (at & 7)) & 7, to - at));
    if (head > 0) {
      write((data[at >> 3] >> (8 - (at & 7) - head)) & ((1u << head) - 1), head);
      at += head;
    }
    const uint64_t first = at >> 3;
    const uint64_t last = to >> 3;
    if (last > first) {
      const int count = count_;
      uint32_t bits = bits_;
      for (uint64_t i = first; i < last; i++) {
        bits = (bits << 8) | data[i];
        const uint8_t byte = static_cast<uint8_t>(bits >> count);
        out_->push_back(byte);
        if (byte == 0xff) out_->push_back(0);
        bits &= (1u << count) - 1;
      }
      bits_ = bits;
      at = last * 8;
    }
    if (to > at) write(data[at >> 3] >> (8 - (to - at)), static_cast<int>(to - at));
  }

  void finish() {
    if (count_ > 0) write((1u << (8 - count_)) - 1, 8 - count_);
    out_->push_back(0xff);
    out_->push_back(0xd9);
  }

 private:
  std::vector<uint8_t>* out_;
  uint32_t bits_ = 0;
  int count_ = 0;
};

bool write_dc(BitWriter* writer, const HuffmanTable* table, int32_t difference) {
  const uint32_t magnitude = static_cast<uint32_t>(difference < 0 ? -difference : difference);
  const int category = difference == 0 ? 0 : 32 - __builtin_clz(magnitude);
  if (category > 11) return false;
  const int length = table->code_length[category];
  if (length == 0) return false;  // an optimised table without this category
  writer->write(table->code[category], length);
  if (category > 0) writer->write(static_cast<uint32_t>(difference < 0 ? difference + (1 << category) - 1 : difference), category);
  return true;
}

bool copy_ac(BitReader* reader, BitWriter* writer, const HuffmanTable* table) {
  for (int k = 1; k < 64;) {
    const int32_t coded = reader->decode_with_bits(table);
    if (coded < 0) return false;
    const int symbol = coded >> 16;
    const int size = symbol & 15;
    const uint32_t bits = static_cast<uint32_t>(coded) & 0xffff;
    const int length = table->code_length[symbol];
    if (length + size <= 24) {
      writer->write((static_cast<uint32_t>(table->code[symbol]) << size) | bits, length + size);
    } else {
      writer->write(table->code[symbol], length);
      writer->write(bits, size);
    }
    if (size == 0 && symbol != 0xf0) return true;
    k += (symbol >> 4) + 1;
    if (k > 64) return false;
  }
  return true;
}

struct Source {
  Entropy entropy;
  std::unique_ptr<BitReader> parser;
  uint64_t copied = 0;
  int32_t dc[4] = {};
  uint64_t mcus = 0;
};

bool recode_mcu(Source* source, const std::vector<ScanComponent>& components, BitWriter* writer, int32_t* written_dc) {
  BitReader* reader = source->parser.get();
  for (size_t c = 0; c < components.size(); c++) {
    const ScanComponent& component = components[c];
    for (int block = component.h * component.v; block > 0; block--) {
      const int32_t coded = reader->decode_with_bits(component.dc);
      if (coded < 0) return false;
      const int category = coded >> 16;
      if (category > 11) return false;
      const int32_t dc = source->dc[c] + extend(static_cast<uint32_t>(coded) & 0xffff, category);
      source->dc[c] = dc;
      if (!write_dc(writer, component.dc, dc - written_dc[c])) return false;
      written_dc[c] = dc;
      if (!copy_ac(reader, writer, component.ac)) return false;
    }
  }
  return true;
}

}  // namespace

bool cut_tiles(const std::vector<TileBytes>& tiles, uint32_t across, uint32_t x, uint32_t y, uint32_t width, uint32_t height,
               CutResult* result) {
  if (tiles.empty() || across == 0 || tiles.size() % across != 0 || width == 0 || height == 0) return false;
  Layout layout;
  if (!read_layout(tiles[0].bytes, tiles[0].size, &layout)) return false;
  for (const TileBytes& tile : tiles) {
    if (tile.size <= layout.data_offset || std::memcmp(tile.bytes, tiles[0].bytes, layout.data_offset) != 0) return false;
  }
  const uint32_t mcu_width = layout.mcu_width, mcu_height = layout.mcu_height;
  const uint64_t down = tiles.size() / across;
  if (tiles.size() > 1 && (layout.width % mcu_width != 0 || layout.height % mcu_height != 0)) return false;
  if (static_cast<uint64_t>(x) + width > static_cast<uint64_t>(across) * layout.width ||
      static_cast<uint64_t>(y) + height > down * layout.height) {
    return false;
  }
  result->x = x % mcu_width;
  result->y = y % mcu_height;
  const uint64_t area_column = (x - result->x) / mcu_width;
  const uint64_t area_row = (y - result->y) / mcu_height;
  const uint64_t area_width = result->x + width;
  const uint64_t area_height = result->y + height;
  if (area_width > 65535 || area_height > 65535) return false;

  const std::vector<ScanComponent>& components = layout.components;
  const uint64_t tile_columns = (layout.width + mcu_width - 1) / mcu_width;
  const uint64_t tile_rows = (layout.height + mcu_height - 1) / mcu_height;
  const uint64_t last_column = area_column + (area_width + mcu_width - 1) / mcu_width;
  std::vector<Source> sources(tiles.size());
  size_t total = 1024;
  for (size_t i = 0; i < tiles.size(); i++) {
    unstuff(tiles[i].bytes, tiles[i].size, layout.data_offset, &sources[i].entropy);
    sources[i].parser = std::make_unique<BitReader>(&sources[i].entropy);
    total += tiles[i].size;
  }
  std::vector<uint8_t>& out = result->jpeg;
  out.reserve(total);
  out.assign(tiles[0].bytes, tiles[0].bytes + layout.data_offset);
  out[layout.size_offset] = static_cast<uint8_t>(area_height >> 8);
  out[layout.size_offset + 1] = static_cast<uint8_t>(area_height);
  out[layout.size_offset + 2] = static_cast<uint8_t>(area_width >> 8);
  out[layout.size_offset + 3] = static_cast<uint8_t>(area_width);
  if (layout.restart_interval) out[layout.restart_offset] = out[layout.restart_offset + 1] = 0;
  BitWriter writer(&out);
  int32_t written_dc[4] = {};
  const size_t channels = components.size();

  auto flush = [&](Source* source) {
    writer.copy_bits(source->entropy.data.data(), source->copied, source->parser->bit);
    source->copied = source->parser->bit;
  };
  // One MCU of a source, kept or dropped; false when the stream fails.
  auto mcu = [&](Source* source, bool keep) -> bool {
    BitReader* parser = source->parser.get();
    if (layout.restart_interval && source->mcus > 0 && source->mcus % layout.restart_interval == 0) {
      flush(source);
      parser->restart();
      if (parser->failed) return false;
      source->copied = parser->bit;
      std::fill(std::begin(source->dc), std::end(source->dc), 0);
    }
    source->mcus++;
    bool verbatim = keep;
    for (size_t c = 0; verbatim && c < channels; c++) verbatim = written_dc[c] == source->dc[c];
    if (keep && !verbatim) {
      flush(source);
      if (!recode_mcu(source, components, &writer, written_dc)) return false;
      source->copied = parser->bit;
      return !parser->failed;
    }
    if (!keep) flush(source);
    parser->skip_mcu(components, source->dc);
    if (verbatim) std::copy(source->dc, source->dc + channels, written_dc);
    else source->copied = parser->bit;
    return !parser->failed;
  };

  const uint64_t rows = (area_height + mcu_height - 1) / mcu_height;
  for (uint64_t row = area_row; row < area_row + rows; row++) {
    const uint64_t tile_row = row / tile_rows;
    for (uint64_t tile_column = 0; tile_column < across; tile_column++) {
      Source* source = &sources[tile_row * across + tile_column];
      while (source->mcus < (row % tile_rows) * tile_columns) {
        if (!mcu(source, false)) return false;
      }
      for (uint64_t column = tile_column * tile_columns; column < (tile_column + 1) * tile_columns; column++) {
        if (!mcu(source, column >= area_column && column < last_column)) return false;
      }
      flush(source);
    }
  }
  for (Source& source : sources) {
    if (!source.parser->check_bounds()) return false;
  }
  writer.finish();
  return true;
}
