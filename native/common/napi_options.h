// Reading the options objects the addons' functions take, shared by native/openjp2 and
// native/jpegtiles (each lists this folder in its binding.gyp include_dirs).
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace napi_options {

// `options[name]` as a non-negative integer no larger than `max`, or false after throwing a
// TypeError (not a number) or a RangeError (negative, fractional or too large).
inline bool read_integer(Napi::Object options, const char* name, double max, double* out) {
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

}  // namespace napi_options
