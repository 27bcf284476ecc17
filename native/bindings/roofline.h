// The `roofline` export: the limits benchmarks measure a DenseNet step against (native/core/roofline).
#pragma once

#include <napi.h>

namespace densetorch::bindings {

// { sgemm(n, reps), model(config, height, width, batch, backward, reps) }
Napi::Object RooflineExports(Napi::Env env);

}  // namespace densetorch::bindings
