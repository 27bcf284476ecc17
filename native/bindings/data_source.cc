#include "data_source.h"

#include "../core/errors.h"
#include "addon_data.h"
#include "errors.h"
#include "tensor.h"

#include <memory>
#include <mutex>
#include <string>
#include <utility>

namespace densetorch::bindings {

namespace {

// One request from the consumer thread to JS.
void call_request(Napi::Env env, Napi::Function callback, std::nullptr_t*, QueueSource::Request* request) {
  std::unique_ptr<QueueSource::Request> owned(request);
  if (env == nullptr || callback.IsEmpty()) return;
  callback.Call({Napi::Number::New(env, static_cast<double>(owned->generation)),
                 Napi::Number::New(env, static_cast<double>(owned->epoch)), Napi::Boolean::New(env, owned->train),
                 Napi::Boolean::New(env, owned->start)});
}

using RequestFn = Napi::TypedThreadSafeFunction<std::nullptr_t, QueueSource::Request, call_request>;

// The thread-safe function that carries requests to JS, and whether it may still be used: it is
// released when the queue source that calls it goes away, or finalized by Node first when the
// environment shuts down (then calling or releasing it would touch freed memory).
struct RequestChannel {
  std::mutex mutex;
  RequestFn fn;
  bool usable = true;

  // Never blocks (unbounded queue). Throws DataError when the request cannot reach JS (the
  // environment is shutting down): the consumer would otherwise wait for batches forever.
  void call(const QueueSource::Request& r) {
    std::lock_guard<std::mutex> lock(mutex);
    auto request = std::make_unique<QueueSource::Request>(r);
    if (usable && fn.NonBlockingCall(request.get()) == napi_ok) {
      request.release();  // call_request owns it now
      return;
    }
    throw DataError("the data loader can no longer be reached (the JS environment is shutting down)");
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    if (usable) (void)fn.Release();  // napi_closing: Node is finalizing it already
    usable = false;
  }
};

// Owned by the queue source's request handler; releases the channel when the handler goes.
struct ChannelOwner {
  std::shared_ptr<RequestChannel> channel;
  explicit ChannelOwner(std::shared_ptr<RequestChannel> c) : channel(std::move(c)) {}
  ~ChannelOwner() { channel->release(); }
  ChannelOwner(const ChannelOwner&) = delete;
  ChannelOwner& operator=(const ChannelOwner&) = delete;
};

void channel_finalized(Napi::Env, std::shared_ptr<RequestChannel>* channel, std::nullptr_t*) {
  std::unique_ptr<std::shared_ptr<RequestChannel>> owned(channel);
  std::lock_guard<std::mutex> lock((*owned)->mutex);
  (*owned)->usable = false;
}

std::vector<double> numbers(const Napi::Array& a) {
  std::vector<double> v;
  for (uint32_t i = 0; i < a.Length(); ++i) v.push_back(a.Get(i).As<Napi::Number>().DoubleValue());
  return v;
}

}  // namespace

Napi::Function NativeFeeder::Init(Napi::Env env) {
  Napi::Function ctor = DefineClass(env, "NativeFeeder",
                                    {
                                        InstanceMethod<&NativeFeeder::Push>("push"),
                                        InstanceMethod<&NativeFeeder::End>("end"),
                                        InstanceMethod<&NativeFeeder::Fail>("fail"),
                                    });
  addon_data(env).feeder_constructor = Napi::Persistent(ctor);
  return ctor;
}

NativeFeeder::NativeFeeder(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeFeeder>(info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    const int64_t size = info[0].As<Napi::Number>().Int64Value();
    const int64_t batches = info[1].As<Napi::Number>().Int64Value();
    const int64_t capacity = info[2].As<Napi::Number>().Int64Value();
    source_ = std::make_shared<QueueSource>(size, batches, capacity);
    auto channel = std::make_shared<RequestChannel>();
    // Unbounded TSFN queue: the consumer never blocks on it (requests are tiny and few).
    channel->fn = RequestFn::New(env, info[3].As<Napi::Function>(), "densetorch.data", 0, 1, static_cast<std::nullptr_t*>(nullptr),
                                 channel_finalized, new std::shared_ptr<RequestChannel>(channel));
    channel->fn.Unref(env);  // an idle feeder must not keep the process alive
    auto owner = std::make_shared<ChannelOwner>(channel);
    source_->set_request_handler([owner](const QueueSource::Request& r) { owner->channel->call(r); });
  });
}

Napi::Value NativeFeeder::Push(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const int64_t generation = info[0].As<Napi::Number>().Int64Value();
    at::Tensor images = NativeTensor::FromValue(info[1], "images");
    at::Tensor labels = NativeTensor::FromValue(info[2], "labels");
    return Napi::Boolean::New(env, source_->push(generation, {images, labels.to(at::kLong)}));
  });
}

Napi::Value NativeFeeder::End(const Napi::CallbackInfo& info) {
  source_->end(info[0].As<Napi::Number>().Int64Value());
  return info.Env().Undefined();
}

Napi::Value NativeFeeder::Fail(const Napi::CallbackInfo& info) {
  source_->fail(info[0].As<Napi::Number>().Int64Value(), info[1].As<Napi::String>().Utf8Value());
  return info.Env().Undefined();
}

Dataset dataset_from(const Napi::Value& value) {
  auto o = value.As<Napi::Object>();
  Dataset d;
  d.images = NativeTensor::FromValue(o.Get("images"), "images");
  d.labels = NativeTensor::FromValue(o.Get("labels"), "labels");
  if (o.Get("mean").IsArray()) {
    d.mean = numbers(o.Get("mean").As<Napi::Array>());
    d.std = numbers(o.Get("std").As<Napi::Array>());
  }
  const std::string augment = o.Get("augment").As<Napi::String>().Utf8Value();
  d.augment = augment == "cifar"            ? Augment::kCifar
              : augment == "trivialaugment" ? Augment::kTrivialAugment
              : augment == "randaugment"    ? Augment::kRandAugment
                                            : Augment::kNone;
  if (o.Get("randomErasing").IsNumber()) d.random_erasing = o.Get("randomErasing").As<Napi::Number>().DoubleValue();
  return d;
}

std::shared_ptr<BatchSource> source_from(const Napi::Value& value, int64_t batch_size, bool shuffle) {
  auto o = value.As<Napi::Object>();
  if (o.Has("feeder")) {
    Napi::Value feeder = o.Get("feeder");
    if (!feeder.IsObject() || !feeder.As<Napi::Object>().InstanceOf(addon_data(value.Env()).feeder_constructor.Value()))
      throw Napi::TypeError::New(value.Env(), "Expected a NativeFeeder for feeder");
    return NativeFeeder::Unwrap(feeder.As<Napi::Object>())->source();
  }
  return std::make_shared<TensorSource>(dataset_from(value), batch_size, shuffle);
}

}  // namespace densetorch::bindings
