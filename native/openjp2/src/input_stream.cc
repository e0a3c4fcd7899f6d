#include "input_stream.h"

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

namespace {

// Where the bytes are (memory when `data` is set, else the file `fd`) and how far OpenJPEG has read.
struct Source {
  const uint8_t* data;
  int fd;
  uint64_t size;
  uint64_t position;
};

// OpenJPEG's stream contract: a read returns the bytes copied, or (OPJ_SIZE_T)-1 at the end or on
// an error.
OPJ_SIZE_T read_bytes(void* buffer, OPJ_SIZE_T count, void* user) {
  auto* source = static_cast<Source*>(user);
  if (source->position >= source->size) return static_cast<OPJ_SIZE_T>(-1);
  const uint64_t available = source->size - source->position;
  const size_t n = count < available ? count : static_cast<size_t>(available);
  if (source->data != nullptr) {
    std::memcpy(buffer, source->data + source->position, n);
    source->position += n;
    return n;
  }
  ssize_t got;
  do {
    got = pread(source->fd, buffer, n, static_cast<off_t>(source->position));
  } while (got < 0 && errno == EINTR);
  // A file that ends early (shortened since its size was taken) reads as the end of the stream.
  if (got <= 0) return static_cast<OPJ_SIZE_T>(-1);
  source->position += static_cast<uint64_t>(got);
  return static_cast<OPJ_SIZE_T>(got);
}

// A skip returns how far it moved, or -1 when it cannot move there.
OPJ_OFF_T skip_bytes(OPJ_OFF_T count, void* user) {
  auto* source = static_cast<Source*>(user);
  if (count < 0) {
    if (static_cast<uint64_t>(-count) > source->position) return -1;
  } else if (static_cast<uint64_t>(count) > source->size - source->position) {
    return -1;
  }
  source->position = static_cast<uint64_t>(static_cast<OPJ_OFF_T>(source->position) + count);
  return count;
}

OPJ_BOOL seek_to(OPJ_OFF_T position, void* user) {
  auto* source = static_cast<Source*>(user);
  if (position < 0 || static_cast<uint64_t>(position) > source->size) return OPJ_FALSE;
  source->position = static_cast<uint64_t>(position);
  return OPJ_TRUE;
}

void free_source(void* user) {
  auto* source = static_cast<Source*>(user);
  if (source->data == nullptr) close(source->fd);
  delete source;
}

opj_stream_t* open_stream(const uint8_t* data, int fd, uint64_t size) {
  auto* source = new (std::nothrow) Source{data, fd, size, 0};
  opj_stream_t* stream = source == nullptr ? nullptr : opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE);
  if (stream == nullptr) {
    if (data == nullptr) close(fd);
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

}  // namespace

opj_stream_t* open_memory_stream(const uint8_t* data, size_t size) { return open_stream(data, -1, size); }

opj_stream_t* open_file_stream(int fd, uint64_t size) { return open_stream(nullptr, fd, size); }
