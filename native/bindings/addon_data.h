// Per-environment state of the addon (constructors kept alive across calls).
#pragma once

#include <napi.h>

namespace densetorch::bindings {

struct AddonData {
  Napi::FunctionReference tensor_constructor;
  Napi::FunctionReference feeder_constructor;
  // densetorch's JS error classes, handed over once at load (setErrorClasses), so that native
  // code throws the right class with its code and the caller's stack.
  Napi::FunctionReference weights_error, busy_error, training_error, data_error, distributed_error,
      native_error;
};

inline AddonData& addon_data(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

}  // namespace densetorch::bindings
