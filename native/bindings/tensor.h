// NativeTensor: the ObjectWrap that owns one at::Tensor for JS.
#pragma once

#include <napi.h>

#include <ATen/ATen.h>

namespace densetorch::bindings {

class NativeTensor : public Napi::ObjectWrap<NativeTensor> {
 public:
  static Napi::Function Init(Napi::Env env);
  // Wraps `t` in a new JS object (takes a reference; memory is reported to V8).
  static Napi::Object Wrap(Napi::Env env, at::Tensor t);
  // The tensor behind a JS value; throws a TypeError naming `what` if it is not a live tensor.
  static const at::Tensor& FromValue(const Napi::Value& value, const char* what);

  explicit NativeTensor(const Napi::CallbackInfo& info);
  ~NativeTensor() override;

 private:
  static Napi::Value FromData(const Napi::CallbackInfo& info);
  Napi::Value Shape(const Napi::CallbackInfo& info);
  Napi::Value Dtype(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value ToArray(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Dispose(const Napi::CallbackInfo& info);
  Napi::Value IsDisposed(const Napi::CallbackInfo& info);

  const at::Tensor& live(Napi::Env env) const;
  void adopt(Napi::Env env, at::Tensor t);
  void release();

  at::Tensor tensor_;
  int64_t reported_bytes_ = 0;
  napi_env env_ = nullptr;
};

}  // namespace densetorch::bindings
