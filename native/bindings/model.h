// NativeModel: the ObjectWrap behind lib/densenet.ts's DenseNet class.
#pragma once

#include <napi.h>

#include "../core/densenet.h"

#include <atomic>
#include <functional>
#include <memory>

namespace densetorch::bindings {

// A model config from its JS object (validated by lib/densenet.ts; this only copies it).
DenseNetConfig config_from(const Napi::Object& o);

class NativeModel : public Napi::ObjectWrap<NativeModel> {
 public:
  static Napi::Function Init(Napi::Env env);
  explicit NativeModel(const Napi::CallbackInfo& info);
  // Releases the module, then the evaluation caches' entries of its tensors (derived_cache.h).
  ~NativeModel() override;

 private:
  Napi::Value Forward(const Napi::CallbackInfo& info);
  Napi::Value Predict(const Napi::CallbackInfo& info);
  Napi::Value CheckInput(const Napi::CallbackInfo& info);
  Napi::Value SetTraining(const Napi::CallbackInfo& info);
  Napi::Value IsTraining(const Napi::CallbackInfo& info);
  Napi::Value NumParameters(const Napi::CallbackInfo& info);
  Napi::Value To(const Napi::CallbackInfo& info);
  Napi::Value Device(const Napi::CallbackInfo& info);
  Napi::Value StateDict(const Napi::CallbackInfo& info);
  Napi::Value LoadStateDict(const Napi::CallbackInfo& info);
  Napi::Value Save(const Napi::CallbackInfo& info);
  Napi::Value LossAndGrads(const Napi::CallbackInfo& info);
  Napi::Value Fit(const Napi::CallbackInfo& info);        // training.cc
  Napi::Value StopFit(const Napi::CallbackInfo& info);    // training.cc
  Napi::Value Evaluate(const Napi::CallbackInfo& info);   // training.cc

  // Throws BusyError when a background job holds the model.
  void ensure_idle() const;
  // Marks the model busy for a background job; returns the callback that releases it.
  std::function<void()> hold(Napi::Env env);

  DenseNet model_{nullptr};
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
  std::shared_ptr<std::atomic<bool>> stop_ = std::make_shared<std::atomic<bool>>(false);
  bool training_at_hold_ = true;  // the mode when the running job started (main thread only)
};

// readWeights(path) -> Promise<{ tensors: Record<string, NativeTensor>, metadata: Record<string, string> }>
Napi::Value ReadWeights(const Napi::CallbackInfo& info);

// writeFileAtomically(path, bytes) -> Promise<void>: replaces the file with the bytes, crash-safe
// (native/core/atomic_file.h), on libuv's pool. For files written from JS (ONNX export).
Napi::Value WriteFileAtomically(const Napi::CallbackInfo& info);

}  // namespace densetorch::bindings
