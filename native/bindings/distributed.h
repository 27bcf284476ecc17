// The `distributed` export: c10d process groups for JS (native/core/distributed).
#pragma once

#include <napi.h>

namespace densetorch::bindings {

// { available, reason, init, isInitialized, info, destroy, allReduce, broadcast, barrier }
Napi::Object DistributedExports(Napi::Env env);

}  // namespace densetorch::bindings
