// One table per kernel, in the style of ATen's DispatchStub: a portable variant always
// registered, ISA variants where they are compiled, and the variant this process runs picked
// once, when the table is built (as the addon loads), from capability(): the best registered at
// or below it.
#pragma once

#include "cpu_capability.h"

namespace densetorch::kernels {

// The variant a table picked: the function and the instruction set it was built for.
template <class Fn>
struct Variant {
  Fn fn;
  Capability isa;
};

// The ISA variants are compiled for x86-64 only: DT_X86(avx2::rows) names one there, null elsewhere.
#if defined(__x86_64__) && defined(__GNUC__)
#define DT_KERNELS_X86 1
#define DT_X86(fn) fn
#else
#define DT_X86(fn) nullptr
#endif

// The code between DT_ISA_BEGIN("avx2,fma") and DT_ISA_END is compiled for that instruction set:
// GCC's target pragma, or clang's attribute push (clang does not take the GCC pragma).
#define DT_PRAGMA(x) _Pragma(#x)
#if defined(__clang__)
#define DT_ISA_BEGIN(isa) DT_PRAGMA(clang attribute push(__attribute__((target(isa))), apply_to = function))
#define DT_ISA_END DT_PRAGMA(clang attribute pop)
#else
#define DT_ISA_BEGIN(isa) DT_PRAGMA(GCC push_options) DT_PRAGMA(GCC target(isa))
#define DT_ISA_END DT_PRAGMA(GCC pop_options)
#endif

template <class Fn>
class KernelTable {
 public:
  // portable: plain C++, any CPU (also the reference the tests compare against); avx2: AVX2 +
  // FMA; avx512: AVX-512F (null where not compiled).
  KernelTable(Fn portable, Fn avx2, Fn avx512)
      : portable_(portable), avx2_(avx2), avx512_(avx512), selected_(at(capability())) {}

  // The best variant at or below `cap`.
  Variant<Fn> at(Capability cap) const {
    if (cap >= Capability::kAvx512 && avx512_ != nullptr) return {avx512_, Capability::kAvx512};
    if (cap >= Capability::kAvx2 && avx2_ != nullptr) return {avx2_, Capability::kAvx2};
    return {portable_, Capability::kDefault};
  }
  // The variant this process runs.
  const Variant<Fn>& selected() const { return selected_; }

 private:
  Fn portable_, avx2_, avx512_;
  Variant<Fn> selected_;
};

}  // namespace densetorch::kernels
