#include "memory_stream.h"

#include <cstring>
#include <new>

namespace {

struct MemorySource {
  const uint8_t* data;
  size_t size;
  size_t position;
};

// OpenJPEG's stream contract: a read returns the bytes copied, or (OPJ_SIZE_T)-1 at the end.
OPJ_SIZE_T read_bytes(void* buffer, OPJ_SIZE_T count, void* user) {
  auto* source = static_cast<MemorySource*>(user);
  if (source->position >= source->size) return static_cast<OPJ_SIZE_T>(-1);
  const size_t available = source->size - source->position;
  const size_t n = count < available ? count : available;
  std::memcpy(buffer, source->data + source->position, n);
  source->position += n;
  return n;
}

// A skip returns how far it moved, or -1 when it cannot move there.
OPJ_OFF_T skip_bytes(OPJ_OFF_T count, void* user) {
  auto* source = static_cast<MemorySource*>(user);
  if (count < 0) {
    if (static_cast<size_t>(-count) > source->position) return -1;
  } else if (static_cast<uint64_t>(count) > source->size - source->position) {
    return -1;
  }
  source->position = static_cast<size_t>(static_cast<OPJ_OFF_T>(source->position) + count);
  return count;
}

OPJ_BOOL seek_to(OPJ_OFF_T position, void* user) {
  auto* source = static_cast<MemorySource*>(user);
  if (position < 0 || static_cast<uint64_t>(position) > source->size) return OPJ_FALSE;
  source->position = static_cast<size_t>(position);
  return OPJ_TRUE;
}

void free_source(void* user) { delete static_cast<MemorySource*>(user); }

}  // namespace

opj_stream_t* open_memory_stream(const uint8_t* data, size_t size) {
  auto* source = new (std::nothrow) MemorySource{data, size, 0};
  if (source == nullptr) return nullptr;
  opj_stream_t* stream = opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE);
  if (stream == nullptr) {
    delete source;
    return nullptr;
  }
  opj_stream_set_user_data(stream, source, free_source);
  opj_stream_set_user_data_length(stream, size);
  opj_stream_set_read_function(stream, read_bytes);
  opj_stream_set_skip_function(stream, skip_bytes);
  opj_stream_set_seek_function(stream, seek_to);
  return stream;
}
