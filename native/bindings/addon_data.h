// Per-environment state of the addon (constructors kept alive across calls).
#pragma once

#include <napi.h>

namespace densetorch::bindings {

struct AddonData {
  Napi::FunctionReference tensor_constructor;
  Napi::FunctionReference feeder_constructor;
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace densetorch::bindings
