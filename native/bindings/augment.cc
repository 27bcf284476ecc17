// The `augment` export: the image policies of native/core/augment for data sets decoded in JS
// (image folders). Runs on the calling thread (a few small tensor operations per image).
#include "augment.h"

#include "../core/augment.h"
#include "errors.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cstring>

namespace densetorch::bindings {

namespace {

uint64_t seed_of(const Napi::Value& v) { return static_cast<uint64_t>(v.As<Napi::Number>().Int64Value()); }

// policy(pixels: Uint8Array (height x width x channels, interleaved), width, height, channels,
// name: 'trivialaugment' | 'randaugment', seed) -> a new Uint8Array of the same layout.
Napi::Value Policy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto pixels = info[0].As<Napi::Uint8Array>();
    const int64_t w = info[1].As<Napi::Number>().Int64Value(), h = info[2].As<Napi::Number>().Int64Value();
    const int64_t c = info[3].As<Napi::Number>().Int64Value();
    if (static_cast<int64_t>(pixels.ElementLength()) != w * h * c) throw std::invalid_argument("pixels do not match width x height x channels");
    const AugmentPolicy policy = parse_policy(info[4].As<Napi::String>().Utf8Value());
    at::Generator gen = at::detail::createCPUGenerator(seed_of(info[5]));
    const at::Tensor hwc = at::from_blob(pixels.Data(), {h, w, c}, at::kByte);
    const at::Tensor out = apply_policy(hwc.permute({2, 0, 1}).contiguous(), policy, gen).permute({1, 2, 0}).contiguous();
    auto result = Napi::Uint8Array::New(env, static_cast<std::size_t>(out.numel()));
    std::memcpy(result.Data(), out.data_ptr<uint8_t>(), static_cast<std::size_t>(out.numel()));
    return result;
  });
}

// erase(images: Float32Array of [N, C, H, W], index, channels, height, width, p, seed): RandomErasing
// of image `index`, in place.
Napi::Value Erase(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto images = info[0].As<Napi::Float32Array>();
    auto num = [&](std::size_t i) { return info[i].As<Napi::Number>().Int64Value(); };
    const int64_t index = num(1), c = num(2), h = num(3), w = num(4);
    if (index < 0 || static_cast<int64_t>(images.ElementLength()) < (index + 1) * c * h * w)
      throw std::out_of_range("image index outside the batch");
    at::Tensor image = at::from_blob(images.Data() + index * c * h * w, {c, h, w}, at::kFloat);
    at::Generator gen = at::detail::createCPUGenerator(seed_of(info[6]));
    random_erasing(image, info[5].As<Napi::Number>().DoubleValue(), gen);
    return env.Undefined();
  });
}

}  // namespace

Napi::Object AugmentExports(Napi::Env env) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("policy", Napi::Function::New<Policy>(env, "policy"));
  out.Set("erase", Napi::Function::New<Erase>(env, "erase"));
  return out;
}

}  // namespace densetorch::bindings
