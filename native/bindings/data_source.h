// NativeFeeder: the JS data loader's end of a QueueSource (core/data.h). JS pushes batches into
// it; fit/evaluate pull them on their own thread and ask JS for more through a callback.
#pragma once

#include <napi.h>

#include "../core/data.h"

#include <memory>

namespace densetorch::bindings {

class NativeFeeder : public Napi::ObjectWrap<NativeFeeder> {
 public:
  static Napi::Function Init(Napi::Env env);
  // new NativeFeeder(size, batches, capacity, onRequest(generation, epoch, train, start))
  explicit NativeFeeder(const Napi::CallbackInfo& info);
  const std::shared_ptr<QueueSource>& source() const { return source_; }

 private:
  Napi::Value Push(const Napi::CallbackInfo& info);  // push(generation, images, labels) -> false when stale
  Napi::Value End(const Napi::CallbackInfo& info);   // end(generation)
  Napi::Value Fail(const Napi::CallbackInfo& info);  // fail(generation, message)

  std::shared_ptr<QueueSource> source_;
};

// The batch source behind a JS data set object (lib/data): a NativeFeeder when it has `feeder`,
// else an in-memory data set (images, labels, mean, std, augment) batched here.
std::shared_ptr<BatchSource> source_from(const Napi::Value& value, int64_t batch_size, bool shuffle);

// The in-memory data set of a JS data set object (tensor references, no copies).
Dataset dataset_from(const Napi::Value& value);

}  // namespace densetorch::bindings
