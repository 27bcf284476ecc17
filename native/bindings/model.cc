#include "model.h"

#include "../core/derived_cache.h"

#include "../core/compute_thread.h"
#include "../core/atomic_file.h"
#include "../core/errors.h"
#include "../core/precision.h"
#include "../core/tensor_ops.h"
#include "../core/trainer.h"
#include "../core/weights_io.h"
#include "errors.h"
#include "tensor.h"
#include "worker.h"

#include <string>

namespace densetorch::bindings {

namespace {

int64_t get_int(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().Int64Value(); }
double get_double(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().DoubleValue(); }

Napi::Object tensors_to_js(Napi::Env env, NamedTensors& tensors) {
  Napi::Object out = Napi::Object::New(env);
  for (auto& [name, t] : tensors) out.Set(name, NativeTensor::Wrap(env, std::move(t)));
  return out;
}

}  // namespace

// The JS config has been validated by lib/densenet.ts; this only copies it.
DenseNetConfig config_from(const Napi::Object& o) {
  DenseNetConfig c;
  c.growth_rate = get_int(o, "growthRate");
  c.block_config.clear();
  auto blocks = o.Get("blockConfig").As<Napi::Array>();
  for (uint32_t i = 0; i < blocks.Length(); ++i) c.block_config.push_back(blocks.Get(i).As<Napi::Number>().Int64Value());
  c.num_init_features = get_int(o, "numInitFeatures");
  c.bn_size = get_int(o, "bnSize");
  c.compression = get_double(o, "compression");
  c.drop_rate = get_double(o, "dropRate");
  c.num_classes = get_int(o, "numClasses");
  c.in_channels = get_int(o, "inChannels");
  c.stem = o.Get("stem").As<Napi::String>().Utf8Value() == "cifar" ? Stem::kCifar : Stem::kImageNet;
  c.memory_efficient = o.Get("memoryEfficient").As<Napi::Boolean>().Value();
  return c;
}


Napi::Function NativeModel::Init(Napi::Env env) {
  return DefineClass(env, "NativeModel",
                     {
                         InstanceMethod<&NativeModel::Forward>("forward"),
                         InstanceMethod<&NativeModel::Predict>("predict"),
                         InstanceMethod<&NativeModel::CheckInput>("checkInput"),
                         InstanceMethod<&NativeModel::SetTraining>("setTraining"),
                         InstanceMethod<&NativeModel::IsTraining>("isTraining"),
                         InstanceMethod<&NativeModel::NumParameters>("numParameters"),
                         InstanceMethod<&NativeModel::To>("to"),
                         InstanceMethod<&NativeModel::Device>("device"),
                         InstanceMethod<&NativeModel::StateDict>("stateDict"),
                         InstanceMethod<&NativeModel::LoadStateDict>("loadStateDict"),
                         InstanceMethod<&NativeModel::Save>("save"),
                         InstanceMethod<&NativeModel::LossAndGrads>("lossAndGrads"),
                         InstanceMethod<&NativeModel::Fit>("fit"),
                         InstanceMethod<&NativeModel::StopFit>("stopFit"),
                         InstanceMethod<&NativeModel::Evaluate>("evaluate"),
                     });
}

NativeModel::~NativeModel() {
  model_ = nullptr;
  prune_derived_caches();
}

NativeModel::NativeModel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeModel>(info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "config must be an object");
    model_ = DenseNet(config_from(info[0].As<Napi::Object>()));
  });
}

void NativeModel::ensure_idle() const {
  if (busy_->load()) throw BusyError("the model is busy with a running fit, predict or save; wait for it to finish");
}

std::function<void()> NativeModel::hold(Napi::Env env) {
  ensure_idle();
  // The job may flip the module's mode on its own thread (predict and evaluate run in eval mode
  // and restore it): isTraining() answers from this copy until the job settles.
  training_at_hold_ = model_->is_training();
  busy_->store(true);
  // Keep the JS wrapper (and so this object) alive until the job settles.
  auto self = std::make_shared<Napi::ObjectReference>(Napi::Persistent(Value()));
  return [busy = busy_, self]() mutable {
    busy->store(false);
    self->Reset();
  };
}

Napi::Value NativeModel::Forward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    ensure_idle();
    const at::Tensor& x = NativeTensor::FromValue(info[0], "input");
    model_->check_input(x);
    // Synchronous, computed on the compute thread (the JS thread runs LibTorch alone:
    // compute_thread.h): it waits behind the work queued before it, and during another model's
    // fit it runs between two of its steps. The compute thread never waits on the JS thread, so
    // this wait always ends.
    at::Tensor out = on_compute_thread([&] {
      torch::NoGradGuard no_grad;
      return model_->forward(x);
    });
    return NativeTensor::Wrap(env, std::move(out));
  });
}

// predict(inputs: NativeTensor[], batchSize, precision) -> Promise<NativeTensor[]>
Napi::Value NativeModel::Predict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto list = info[0].As<Napi::Array>();
    std::vector<at::Tensor> inputs;
    for (uint32_t i = 0; i < list.Length(); ++i) inputs.push_back(NativeTensor::FromValue(list.Get(i), "input"));
    const int64_t batch = info[1].As<Napi::Number>().Int64Value();
    const Precision precision = parse_precision(info[2].As<Napi::String>().Utf8Value());
    auto done = hold(env);
    return ComputePromise<std::vector<at::Tensor>>::Start(
        env, [model = model_, inputs, batch, precision]() mutable { return predict(model, inputs, batch, precision); },
        [](Napi::Env e, std::vector<at::Tensor>& outs) -> Napi::Value {
          Napi::Array array = Napi::Array::New(e, outs.size());
          for (uint32_t i = 0; i < outs.size(); ++i) array.Set(i, NativeTensor::Wrap(e, std::move(outs[i])));
          return array;
        },
        done);
  });
}

Napi::Value NativeModel::CheckInput(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] { model_->check_input(NativeTensor::FromValue(info[0], "input")); });
  return env.Undefined();
}

Napi::Value NativeModel::SetTraining(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    ensure_idle();
    model_->train(info[0].As<Napi::Boolean>().Value());
  });
  return env.Undefined();
}

Napi::Value NativeModel::IsTraining(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), busy_->load() ? training_at_hold_ : model_->is_training());
}

Napi::Value NativeModel::NumParameters(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(model_->num_parameters()));
}

Napi::Value NativeModel::To(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    ensure_idle();
    model_->to(parse_device(info[0].As<Napi::String>().Utf8Value()));
  });
  return env.Undefined();
}

Napi::Value NativeModel::Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), device_name(model_->parameters().front().device()));
}

Napi::Value NativeModel::StateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    ensure_idle();  // the tensors share memory with weights a running fit is updating
    NamedTensors sd = state_dict(*model_);
    return tensors_to_js(env, sd);
  });
}

Napi::Value NativeModel::LoadStateDict(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [&] {
    ensure_idle();
    if (!info[0].IsObject()) throw Napi::TypeError::New(env, "state dict must be an object");
    auto obj = info[0].As<Napi::Object>();
    NamedTensors tensors;
    Napi::Array keys = obj.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
      tensors.emplace_back(key, NativeTensor::FromValue(obj.Get(key), key.c_str()));
    }
    load_state_dict(*model_, tensors, info[1].As<Napi::Boolean>().Value());
  });
  return env.Undefined();
}

// save(path, metadata: Record<string, string>) -> Promise<void>
Napi::Value NativeModel::Save(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    Metadata metadata;
    auto obj = info[1].As<Napi::Object>();
    Napi::Array keys = obj.GetPropertyNames();
    for (uint32_t i = 0; i < keys.Length(); ++i) {
      const std::string key = keys.Get(i).As<Napi::String>().Utf8Value();
      metadata.emplace_back(key, obj.Get(key).As<Napi::String>().Utf8Value());
    }
    auto done = hold(env);
    return PromiseWorker<bool>::Start(
        env,
        [model = model_, path, metadata]() {
          save_safetensors(path, state_dict(*model), metadata);
          return true;
        },
        [](Napi::Env e, bool&) -> Napi::Value { return e.Undefined(); }, done);
  });
}

// lossAndGrads(x, labels) -> { loss, output, grads }: one forward/backward pass with
// cross-entropy in the model's current mode. For tests and benchmarks.
Napi::Value NativeModel::LossAndGrads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    ensure_idle();
    densetorch::LossAndGrads r = loss_and_grads(model_, NativeTensor::FromValue(info[0], "input"), NativeTensor::FromValue(info[1], "labels"));
    Napi::Object out = Napi::Object::New(env);
    out.Set("loss", r.loss);
    out.Set("output", NativeTensor::Wrap(env, std::move(r.output)));
    out.Set("grads", tensors_to_js(env, r.grads));
    return out;
  });
}

Napi::Value ReadWeights(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    return PromiseWorker<WeightFile>::Start(
        env, [path]() { return load_weights(path); },
        [](Napi::Env e, WeightFile& file) -> Napi::Value {
          Napi::Object out = Napi::Object::New(e);
          out.Set("tensors", tensors_to_js(e, file.tensors));
          Napi::Object metadata = Napi::Object::New(e);
          for (const auto& [k, v] : file.metadata) metadata.Set(k, v);
          out.Set("metadata", metadata);
          return out;
        });
  });
}

Napi::Value WriteFileAtomically(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const std::string path = info[0].As<Napi::String>().Utf8Value();
    const auto bytes = info[1].As<Napi::Uint8Array>();
    // A copy: the JS buffer may change or be collected while the pool writes.
    std::string data(reinterpret_cast<const char*>(bytes.Data()), bytes.ByteLength());
    return PromiseWorker<bool>::Start(
        env,
        [path, data = std::move(data)]() {
          write_atomically(path, [&](const WriteBytes& write) { write(data.data(), data.size()); });
          return true;
        },
        [](Napi::Env e, bool&) -> Napi::Value { return e.Undefined(); });
  });
}

}  // namespace densetorch::bindings
