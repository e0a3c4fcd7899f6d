// An OpenJPEG input stream over the bytes of a JPEG 2000 file: either already in memory, or a
// local file read with pread as OpenJPEG asks for it (no copy of the whole file first; the
// single-tile case reads the codestream once, straight into OpenJPEG's tile buffer).
#pragma once

#include <cstddef>
#include <cstdint>
#include <openjpeg.h>

// A stream reading `size` bytes at `data`, which must outlive it. Null when OpenJPEG cannot
// allocate one.
opj_stream_t* open_memory_stream(const uint8_t* data, size_t size);

// A stream reading `size` bytes from the open file `fd`, which it owns from then on (closed with
// the stream, or at once when null is returned).
opj_stream_t* open_file_stream(int fd, uint64_t size);
