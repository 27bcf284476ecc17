// The `augment` export: image policies and random erasing for images decoded in JS.
#pragma once

#include <napi.h>

namespace densetorch::bindings {

// { policy, erase }
Napi::Object AugmentExports(Napi::Env env);

}  // namespace densetorch::bindings
