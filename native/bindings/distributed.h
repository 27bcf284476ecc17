// The `distributed` export: c10d process groups for JS (native/core/distributed).
#pragma once

#include <napi.h>

namespace densetorch::bindings {

// { available, reason, init, isInitialized, info, destroy, allReduce, broadcast, barrier, shardIndices }
Napi::Object DistributedExports(Napi::Env env);

}  // namespace densetorch::bindings
