// One table per kernel, in the style of ATen's DispatchStub: a portable variant always
// registered, ISA variants where they are compiled, and the variant this process runs picked
// once from capability() (the best registered at or below it).
#pragma once

#include "cpu_capability.h"

namespace densetorch::kernels {

// The variant a table picked: the function and the instruction set it was built for.
template <class Fn>
struct Variant {
  Fn fn;
  Capability isa;
};

template <class Fn>
struct KernelTable {
  Fn portable;            // plain C++: any CPU (also the reference the tests compare against)
  Fn avx2 = nullptr;      // AVX2 + FMA
  Fn avx512 = nullptr;    // AVX-512F

  // The best variant at or below `cap`.
  Variant<Fn> at(Capability cap) const {
    if (cap >= Capability::kAvx512 && avx512 != nullptr) return {avx512, Capability::kAvx512};
    if (cap >= Capability::kAvx2 && avx2 != nullptr) return {avx2, Capability::kAvx2};
    return {portable, Capability::kDefault};
  }
  // The variant this process runs.
  Variant<Fn> selected() const { return at(capability()); }
};

}  // namespace densetorch::kernels
