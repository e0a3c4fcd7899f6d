// The Node-API face of the decoder: a Decoder object per file and resolution level, whose decode()
// and close() return promises and do their work on the libuv thread pool, so neither a large
// decode nor freeing what OpenJPEG holds ever blocks the event loop.
#include <napi.h>
#include <openjpeg.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <utility>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "decode.h"
#include "napi_options.h"

namespace {

// Decodes and closes queued or running, for release_free_memory.
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
    case Failure::kChanged: return "ERR_JP2_CHANGED";
    default: return "ERR_JP2_UNDECODABLE";
  }
}

// Work on the pool thread for one Decoder, which it keeps alive and marked busy until it settles.
class DecoderWork : public Napi::AsyncWorker {
 public:
  DecoderWork(Napi::Env env, Napi::Object owner, bool* busy)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), busy_(busy) {
    owner_ = Napi::Persistent(owner);
    *busy_ = true;
    in_flight.fetch_add(1);
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override {
    lower_thread_priority();
    Run();
    // An untiled image makes OpenJPEG allocate (and free) about as much as the file per decode,
    // in the arena of the pool thread it ran on; glibc keeps those pages, so every pool thread
    // would go on holding one decode's worth (~160 MB for 4 threads on a 40 MB file). They are
    // handed back when the last work in flight ends, not after each decode: faulting them in
    // again costs ~10 % more CPU per decode under load (measured), while memory held between
    // decodes of a busy server is reused at once.
    if (in_flight.fetch_sub(1) == 1) release_free_memory();
  }

  void OnOK() override {
    *busy_ = false;
    Settle(Env());
  }

 protected:
  virtual void Run() = 0;
  virtual void Settle(Napi::Env env) = 0;
  Napi::Promise::Deferred deferred_;

 private:
  Napi::ObjectReference owner_;
  bool* busy_;
};

class DecodeWork : public DecoderWork {
 public:
  DecodeWork(Napi::Env env, Napi::Object owner, bool* busy, Jp2Decoder* decoder, const Area& area)
      : DecoderWork(env, owner, busy), decoder_(decoder), area_(area) {}
  ~DecodeWork() override { std::free(result_.data); }

 protected:
  void Run() override { result_ = decoder_->decode(area_); }

  void Settle(Napi::Env env) override {
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

 private:
  Jp2Decoder* decoder_;
  Area area_;
  DecodeResult result_;
};

// Frees OpenJPEG's codec, tile data and image (tens of MB in many blocks) off the event loop.
class CloseWork : public DecoderWork {
 public:
  CloseWork(Napi::Env env, Napi::Object owner, bool* busy, std::unique_ptr<Jp2Decoder> decoder)
      : DecoderWork(env, owner, busy), decoder_(std::move(decoder)) {}

 protected:
  void Run() override { decoder_.reset(); }
  void Settle(Napi::Env env) override { deferred_.Resolve(env.Undefined()); }

 private:
  std::unique_ptr<Jp2Decoder> decoder_;
};

using napi_options::read_integer;

// More OpenJPEG threads than this for one decode is a mistake, not a machine.
constexpr double kMaxThreads = 64;

// new Decoder(input: Buffer | string, options: {size, reduce, reusable, threads}): one file (its
// bytes, or a local file's path, `size` bytes long) at one resolution level, each decode split over
// `threads` OpenJPEG threads (1 to 64). decode({x0, y0, x1, y1,
// maxPixels}) resolves to {width, height, channels, data}; close() frees what OpenJPEG holds.
// One call at a time: another while one runs, or any after close, throws. Argument mistakes
// throw at once; decoding problems reject with an Error whose code is ERR_JP2_UNDECODABLE,
// ERR_JP2_TOO_LARGE, ERR_JP2_ARGUMENT or ERR_JP2_CHANGED (the file is not the size given).
class Decoder : public Napi::ObjectWrap<Decoder> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "Decoder", {InstanceMethod<&Decoder::Decode>("decode"), InstanceMethod<&Decoder::Close>("close")});
  }

  explicit Decoder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Decoder>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 2 || !(info[0].IsBuffer() || info[0].IsString()) || !info[1].IsObject()) {
      Napi::TypeError::New(env, "new Decoder(input: Buffer | string, options: object)").ThrowAsJavaScriptException();
      return;
    }
    Napi::Object options = info[1].As<Napi::Object>();
    double size, reduce, threads;
    if (!read_integer(options, "size", 9007199254740991.0, &size) || !read_integer(options, "reduce", 32, &reduce) ||
        !read_integer(options, "threads", kMaxThreads, &threads)) {
      return;
    }
    if (threads < 1) {
      Napi::RangeError::New(env, "options.threads is out of range").ThrowAsJavaScriptException();
      return;
    }
    Input input;
    input.size = static_cast<uint64_t>(size);
    if (info[0].IsBuffer()) {
      auto bytes = info[0].As<Napi::Buffer<uint8_t>>();
      if (bytes.Length() != input.size) {
        Napi::RangeError::New(env, "options.size is not the input's length").ThrowAsJavaScriptException();
        return;
      }
      // Holds the bytes so the garbage collector leaves them alone while OpenJPEG reads them.
      input_ = Napi::Persistent(bytes.As<Napi::Object>());
      input.bytes = bytes.Data();
    } else {
      input.path = info[0].As<Napi::String>().Utf8Value();
    }
    decoder_ = std::make_unique<Jp2Decoder>(std::move(input), static_cast<uint32_t>(reduce), options.Get("reusable").ToBoolean().Value(),
                                            static_cast<uint32_t>(threads));
  }

 private:
  // False after throwing when a call is not allowed now.
  bool idle(Napi::Env env) {
    if (busy_ || !decoder_) {
      Napi::Error::New(env, busy_ ? "the decoder is busy" : "the decoder is closed").ThrowAsJavaScriptException();
      return false;
    }
    return true;
  }

  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) {
      Napi::TypeError::New(env, "decode(options: object)").ThrowAsJavaScriptException();
      return env.Undefined();
    }
    Napi::Object given = info[0].As<Napi::Object>();
    double x0, y0, x1, y1, max_pixels;
    const double coordinate = 4294967295.0;
    if (!read_integer(given, "x0", coordinate, &x0) || !read_integer(given, "y0", coordinate, &y0) || !read_integer(given, "x1", coordinate, &x1) ||
        !read_integer(given, "y1", coordinate, &y1) || !read_integer(given, "maxPixels", 9007199254740991.0, &max_pixels) || !idle(env)) {
      return env.Undefined();
    }
    const Area area{static_cast<uint32_t>(x0), static_cast<uint32_t>(y0), static_cast<uint32_t>(x1), static_cast<uint32_t>(y1),
                    static_cast<uint64_t>(max_pixels)};
    auto* work = new DecodeWork(env, Value(), &busy_, decoder_.get(), area);
    work->Queue();
    return work->Promise();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!idle(env)) return env.Undefined();
    auto* work = new CloseWork(env, Value(), &busy_, std::move(decoder_));
    input_.Reset();
    work->Queue();
    return work->Promise();
  }

  std::unique_ptr<Jp2Decoder> decoder_;
  Napi::ObjectReference input_;
  bool busy_ = false;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("Decoder", Decoder::Define(env));
  exports.Set("openjpegVersion", Napi::String::New(env, opj_version()));
  return exports;
}

}  // namespace

NODE_API_MODULE(openjp2, Init)
