// The Node-API face of the decoder: decode(input, options) returns a promise and does its work on
// the libuv thread pool, so a large decode never blocks the event loop.
#include <napi.h>
#include <openjpeg.h>

#include <atomic>
#include <cstdlib>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "decode.h"

namespace {

// Decodes queued or running, for release_free_memory.
std::atomic<int> in_flight{0};

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

// Lowers the calling pool thread's scheduling priority to nice DECODE_NICENESS, once per thread.
// A decode of an untiled image takes ~100 ms of CPU; with one per pool thread on a 2-core
// machine the event loop had to wait its turn, and /health took up to 350 ms (p99 120 ms at
// 8 connections); below the event loop's priority it kept p99 under 50 ms and max under 100 ms
// at the same throughput per core (bench/README.md). Linux keeps a nice value per thread; raising
// it needs no privilege, and a refusal (a sandbox) only leaves the thread as it was. The thread
// keeps it for the rest of the pool's work (sharp's renders, file reads): work a request waits
// on either way, while the event loop answers everyone.
constexpr int DECODE_NICENESS = 10;

void lower_thread_priority() {
#if defined(__linux__)
  thread_local bool lowered = false;
  if (!lowered) {
    lowered = true;
    setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), DECODE_NICENESS);
  }
#endif
}

const char* failure_code(Failure failure) {
  switch (failure) {
    case Failure::kTooLarge: return "ERR_JP2_TOO_LARGE";
    case Failure::kBadArgument: return "ERR_JP2_ARGUMENT";
    default: return "ERR_JP2_UNDECODABLE";
  }
}

class DecodeWorker : public Napi::AsyncWorker {
 public:
  DecodeWorker(Napi::Env env, Napi::Buffer<uint8_t> input, const DecodeOptions& options)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), options_(options),
        bytes_(input.Data()), size_(input.Length()) {
    // Holds the input so the garbage collector leaves its bytes alone while the pool reads them.
    input_ = Napi::Persistent(input.As<Napi::Object>());
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    lower_thread_priority();
    result_ = decode_jpeg2000(bytes_, size_, options_);
    // An untiled image makes OpenJPEG allocate (and free) about as much as the file per decode,
    // in the arena of the pool thread it ran on; glibc keeps those pages, so every pool thread
    // would go on holding one decode's worth (~160 MB for 4 threads on a 40 MB file). They are
    // handed back when the last decode in flight ends, not after each one: faulting them in
    // again costs ~10 % more CPU per decode under load (measured), while memory held between
    // decodes of a busy server is reused at once.
    if (in_flight.fetch_sub(1) == 1) release_free_memory();
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (result_.failure != Failure::kNone) {
      Napi::Error error = Napi::Error::New(env, result_.message);
      error.Set("code", Napi::String::New(env, failure_code(result_.failure)));
      deferred_.Reject(error.Value());
      return;
    }
    const size_t length = static_cast<size_t>(result_.width) * result_.height * result_.channels;
    // The pixels move to JavaScript without a copy; V8 is told their size so it collects
    // them as promptly as its own memory.
    Napi::MemoryManagement::AdjustExternalMemory(env, static_cast<int64_t>(length));
    auto data = Napi::Buffer<uint8_t>::New(env, result_.data, length, [](Napi::Env finalizing, uint8_t* pixels, size_t* bytes) {
      Napi::MemoryManagement::AdjustExternalMemory(finalizing, -static_cast<int64_t>(*bytes));
      std::free(pixels);
      delete bytes;
    }, new size_t(length));
    result_.data = nullptr;
    Napi::Object decoded = Napi::Object::New(env);
    decoded.Set("width", result_.width);
    decoded.Set("height", result_.height);
    decoded.Set("channels", result_.channels);
    decoded.Set("data", data);
    deferred_.Resolve(decoded);
  }

  ~DecodeWorker() override { std::free(result_.data); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference input_;
  DecodeOptions options_;
  const uint8_t* bytes_;
  size_t size_;
  DecodeResult result_;
};

// A non-negative integer option, or false after throwing a TypeError.
bool read_integer(Napi::Object options, const char* name, double max, double* out) {
  Napi::Value value = options.Get(name);
  if (!value.IsNumber()) {
    Napi::TypeError::New(options.Env(), std::string("options.") + name + " must be a number").ThrowAsJavaScriptException();
    return false;
  }
  const double number = value.As<Napi::Number>().DoubleValue();
  if (!(number >= 0 && number <= max) || number != static_cast<double>(static_cast<uint64_t>(number))) {
    Napi::RangeError::New(options.Env(), std::string("options.") + name + " is out of range").ThrowAsJavaScriptException();
    return false;
  }
  *out = number;
  return true;
}

// decode(input: Buffer, options: {reduce, x0, y0, x1, y1, maxPixels}): Promise<{width, height,
// channels, data}>. Argument mistakes throw at once; decoding problems reject with an Error whose
// code is ERR_JP2_UNDECODABLE, ERR_JP2_TOO_LARGE or ERR_JP2_ARGUMENT.
Napi::Value Decode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsBuffer() || !info[1].IsObject()) {
    Napi::TypeError::New(env, "decode(input: Buffer, options: object)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object given = info[1].As<Napi::Object>();
  double reduce, x0, y0, x1, y1, max_pixels;
  const double coordinate = 4294967295.0;
  if (!read_integer(given, "reduce", 32, &reduce) || !read_integer(given, "x0", coordinate, &x0) ||
      !read_integer(given, "y0", coordinate, &y0) || !read_integer(given, "x1", coordinate, &x1) ||
      !read_integer(given, "y1", coordinate, &y1) || !read_integer(given, "maxPixels", 9007199254740991.0, &max_pixels)) {
    return env.Undefined();
  }
  const DecodeOptions options{static_cast<uint32_t>(reduce), static_cast<uint32_t>(x0), static_cast<uint32_t>(y0),
                              static_cast<uint32_t>(x1), static_cast<uint32_t>(y1), static_cast<uint64_t>(max_pixels)};
  auto* worker = new DecodeWorker(env, info[0].As<Napi::Buffer<uint8_t>>(), options);
  Napi::Promise promise = worker->Promise();
  in_flight.fetch_add(1);
  worker->Queue();
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("decode", Napi::Function::New(env, Decode, "decode"));
  exports.Set("openjpegVersion", Napi::String::New(env, opj_version()));
  return exports;
}

}  // namespace

NODE_API_MODULE(openjp2, Init)
