#include "data_source.h"

#include "addon_data.h"
#include "errors.h"
#include "tensor.h"

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

// Owns the thread-safe function: released (from whichever thread drops the last reference)
// when the queue source that calls it is destroyed.
struct RequestChannel {
  RequestFn fn;
  explicit RequestChannel(RequestFn f) : fn(std::move(f)) {}
  ~RequestChannel() { fn.Release(); }
  RequestChannel(const RequestChannel&) = delete;
  RequestChannel& operator=(const RequestChannel&) = delete;
};

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
    // Unbounded TSFN queue: the consumer never blocks on it (requests are tiny and few).
    RequestFn fn = RequestFn::New(env, info[3].As<Napi::Function>(), "densetorch.data", 0, 1);
    fn.Unref(env);  // an idle feeder must not keep the process alive
    auto channel = std::make_shared<RequestChannel>(std::move(fn));
    source_->set_request_handler([channel](const QueueSource::Request& r) {
      channel->fn.NonBlockingCall(new QueueSource::Request(r));  // fails only while the environment closes
    });
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
  d.augment = o.Get("augment").As<Napi::String>().Utf8Value() == "cifar" ? Augment::kCifar : Augment::kNone;
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
