// An OpenJPEG input stream over bytes already in memory. The decoder only sees the opj_stream_t,
// so a reader fetching byte ranges on demand can later replace this one without touching it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <openjpeg.h>

// A stream reading `size` bytes at `data`, which must outlive it. Null when OpenJPEG cannot
// allocate one.
opj_stream_t* open_memory_stream(const uint8_t* data, size_t size);
