#include "roofline.h"

#include "../core/roofline.h"
#include "errors.h"
#include "model.h"
#include "worker.h"

namespace densetorch::bindings {
namespace {

// sgemm(n, reps) -> Promise<seconds>: median time of an n x n float32 matmul.
Napi::Value Sgemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const int64_t n = info[0].As<Napi::Number>().Int64Value();
    const int reps = info[1].As<Napi::Number>().Int32Value();
    // On the compute thread: the threads training and predictions run with.
    return ComputePromise<double>::Start(env, [n, reps] { return time_matmul(n, reps); },
                                         [](Napi::Env e, double& s) { return Napi::Number::New(e, s); });
  });
}

struct ModelLimits {
  double flops = 0, floor_seconds = 0;
  int64_t convolutions = 0;
};

// model(config, height, width, batch, backward, reps) -> Promise<{ forwardFlopsPerImage,
// convolutions, floorSeconds }>: the conv-only floor of one step at this batch.
Napi::Value Model(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const DenseNetConfig config = config_from(info[0].As<Napi::Object>());
    const int64_t height = info[1].As<Napi::Number>().Int64Value(), width = info[2].As<Napi::Number>().Int64Value();
    const int64_t batch = info[3].As<Napi::Number>().Int64Value();
    const bool backward = info[4].As<Napi::Boolean>().Value();
    const int reps = info[5].As<Napi::Number>().Int32Value();
    return ComputePromise<ModelLimits>::Start(
        env,
        [=] {
          const auto shapes = conv_shapes(config, height, width);
          return ModelLimits{forward_flops(shapes), time_convolutions(shapes, batch, backward, reps), static_cast<int64_t>(shapes.size())};
        },
        [](Napi::Env e, ModelLimits& m) -> Napi::Value {
          Napi::Object out = Napi::Object::New(e);
          out.Set("forwardFlopsPerImage", m.flops);
          out.Set("floorSeconds", m.floor_seconds);
          out.Set("convolutions", static_cast<double>(m.convolutions));
          return out;
        });
  });
}

}  // namespace

Napi::Object RooflineExports(Napi::Env env) {
  Napi::Object out = Napi::Object::New(env);
  out.Set("sgemm", Napi::Function::New<Sgemm>(env, "sgemm"));
  out.Set("model", Napi::Function::New<Model>(env, "model"));
  return out;
}

}  // namespace densetorch::bindings
