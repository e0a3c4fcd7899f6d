// The Node-API face of the tile renderer: render(tiles, options) returns a promise and does its
// work on the libuv thread pool, so the event loop never decodes.
#include <napi.h>

#include <cstdlib>
#include <string>

#include "cut.h"
#include "render.h"
#include "napi_options.h"

namespace {

const char* failure_code(Failure failure) {
  switch (failure) {
    case Failure::kTooLarge: return "ERR_JPEG_TOO_LARGE";
    case Failure::kBadArgument: return "ERR_JPEG_ARGUMENT";
    default: return "ERR_JPEG_UNDECODABLE";
  }
}

class RenderWorker : public Napi::AsyncWorker {
 public:
  RenderWorker(Napi::Env env, Napi::Array held, RenderRequest request)
      : Napi::AsyncWorker(env), deferred_(Napi::Promise::Deferred::New(env)), request_(std::move(request)) {
    // Holds the tiles (an array of our own, which the caller cannot change) so the garbage
    // collector leaves their bytes alone while the pool reads them.
    held_ = Napi::Persistent(held.As<Napi::Object>());
  }

  Napi::Promise Promise() const { return deferred_.Promise(); }

  void Execute() override { result_ = render_tiles(request_); }

  void OnOK() override {
    Napi::Env env = Env();
    if (result_.failure != Failure::kNone) {
      Napi::Error error = Napi::Error::New(env, result_.message);
      error.Set("code", Napi::String::New(env, failure_code(result_.failure)));
      deferred_.Reject(error.Value());
      return;
    }
    // The JPEG moves to JavaScript without a copy.
    auto jpeg = Napi::Buffer<uint8_t>::New(env, result_.jpeg, result_.size, [](Napi::Env, uint8_t* bytes) { std::free(bytes); });
    result_.jpeg = nullptr;
    deferred_.Resolve(jpeg);
  }

  ~RenderWorker() override { std::free(result_.jpeg); }

 private:
  Napi::Promise::Deferred deferred_;
  Napi::ObjectReference held_;
  RenderRequest request_;
  RenderResult result_;
};

using napi_options::read_integer;

// The tiles of an array of Buffers, or false after throwing a TypeError.
bool read_tiles(Napi::Env env, Napi::Array tiles, std::vector<TileBytes>* out, Napi::Array* held) {
  for (uint32_t i = 0; i < tiles.Length(); i++) {
    Napi::Value tile = tiles.Get(i);
    if (!tile.IsBuffer()) {
      Napi::TypeError::New(env, "tiles must be Buffers").ThrowAsJavaScriptException();
      return false;
    }
    auto bytes = tile.As<Napi::Buffer<uint8_t>>();
    if (held != nullptr) held->Set(i, bytes);
    out->push_back(TileBytes{bytes.Data(), bytes.Length()});
  }
  return true;
}

// render(tiles: Buffer[], options: {across, tileWidth, tileHeight, x, y, width, height, colour
// (0 RGB, 1 YCbCr, 2 grey), tables?: Buffer, quality, maxPixels}): Promise<Buffer>. Argument mistakes throw at once; rendering problems
// reject with an Error whose code is ERR_JPEG_UNDECODABLE, ERR_JPEG_TOO_LARGE or ERR_JPEG_ARGUMENT.
Napi::Value Render(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsObject()) {
    Napi::TypeError::New(env, "render(tiles: Buffer[], options: object)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Array tiles = info[0].As<Napi::Array>();
  Napi::Object given = info[1].As<Napi::Object>();
  const double dimension = 65535.0;
  double across, tile_width, tile_height, x, y, width, height, colour, quality, max_pixels;
  if (!read_integer(given, "across", dimension, &across) || !read_integer(given, "tileWidth", dimension, &tile_width) ||
      !read_integer(given, "tileHeight", dimension, &tile_height) || !read_integer(given, "x", 4294967295.0, &x) ||
      !read_integer(given, "y", 4294967295.0, &y) || !read_integer(given, "width", dimension, &width) ||
      !read_integer(given, "height", dimension, &height) || !read_integer(given, "colour", 2, &colour) ||
      !read_integer(given, "quality", 100, &quality) || !read_integer(given, "maxPixels", 9007199254740991.0, &max_pixels)) {
    return env.Undefined();
  }
  Napi::Value tables = given.Get("tables");
  if (!tables.IsUndefined() && !tables.IsBuffer()) {
    Napi::TypeError::New(env, "options.tables must be a Buffer or undefined").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  RenderRequest request{{}, TileBytes{nullptr, 0}, static_cast<Colour>(colour), static_cast<uint32_t>(across),
                        static_cast<uint32_t>(tile_width), static_cast<uint32_t>(tile_height), static_cast<uint32_t>(x),
                        static_cast<uint32_t>(y), static_cast<uint32_t>(width), static_cast<uint32_t>(height),
                        static_cast<int>(quality), static_cast<uint64_t>(max_pixels)};
  Napi::Array held = Napi::Array::New(env, tiles.Length() + 1);
  if (!read_tiles(env, tiles, &request.tiles, &held)) return env.Undefined();
  if (tables.IsBuffer()) {
    auto bytes = tables.As<Napi::Buffer<uint8_t>>();
    held.Set(tiles.Length(), bytes);
    request.tables = TileBytes{bytes.Data(), bytes.Length()};
  }
  auto* worker = new RenderWorker(env, held, std::move(request));
  Napi::Promise promise = worker->Promise();
  worker->Queue();
  return promise;
}

// cut(tiles: Buffer[], options: {across, x, y, width, height}): {jpeg, x, y} | undefined, on the
// calling thread (see cut.h). Undefined when the tiles cannot be cut; argument mistakes throw.
Napi::Value Cut(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArray() || !info[1].IsObject()) {
    Napi::TypeError::New(env, "cut(tiles: Buffer[], options: object)").ThrowAsJavaScriptException();
    return env.Undefined();
  }
  Napi::Object given = info[1].As<Napi::Object>();
  double across, x, y, width, height;
  if (!read_integer(given, "across", 65535.0, &across) || !read_integer(given, "x", 4294967295.0, &x) ||
      !read_integer(given, "y", 4294967295.0, &y) || !read_integer(given, "width", 65535.0, &width) ||
      !read_integer(given, "height", 65535.0, &height)) {
    return env.Undefined();
  }
  std::vector<TileBytes> tiles;
  if (!read_tiles(env, info[0].As<Napi::Array>(), &tiles, nullptr)) return env.Undefined();
  CutResult result;
  if (!cut_tiles(tiles, static_cast<uint32_t>(across), static_cast<uint32_t>(x), static_cast<uint32_t>(y), static_cast<uint32_t>(width),
                 static_cast<uint32_t>(height), &result)) {
    return env.Undefined();
  }
  Napi::Object cut = Napi::Object::New(env);
  cut.Set("jpeg", Napi::Buffer<uint8_t>::Copy(env, result.jpeg.data(), result.jpeg.size()));
  cut.Set("x", result.x);
  cut.Set("y", result.y);
  return cut;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("cut", Napi::Function::New(env, Cut, "cut"));
  exports.Set("render", Napi::Function::New(env, Render, "render"));
  return exports;
}

}  // namespace

NODE_API_MODULE(jpegtiles, Init)
