// Single random draws from a generator, as torch.randint(high, (1,)) makes them.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>

namespace densetorch {

// An integer in [0, high) from `gen`, the same draw as torch.randint(high, (1,), generator=gen).
inline int64_t draw_int(int64_t high, at::Generator& gen) {
  return at::randint(high, {1}, gen, at::TensorOptions().dtype(at::kLong)).item<int64_t>();
}

}  // namespace densetorch
