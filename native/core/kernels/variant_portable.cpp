// The portable variant of every GEMM-based kernel: the same micro-kernel sources over a "vector"
// of 8 plain floats (the AVX2 variant's shapes), for any CPU the compiler targets. It is the
// reference the ISA variants are tested against (test/native/norm_gemm.cpp runs each) and what
// DENSETORCH_CPU_CAPABILITY=default selects; the model itself then runs LibTorch's convolutions,
// which are faster than this (convolutions.cpp).
#include "variants.h"

#include <cstring>
#include <vector>

namespace densetorch::kernels::portable {
struct Isa {
  struct V {
    float v[8];
  };
  static constexpr int64_t kWidth = 8;
  static constexpr int rows_for(int nv) { return nv == 4 ? 2 : nv == 3 ? 4 : nv == 2 ? 6 : 12; }
  static constexpr int kWeightRows = 4, kWeightVectors = 3, kDataRows = 4, kEpilogueVectors = 2;
  static constexpr bool kWeightPanelsOuter = true;
  template <class F>
  static V each(F&& f) {
    V r;
    for (int i = 0; i < 8; ++i) r.v[i] = f(i);
    return r;
  }
  static V zero() { return each([](int) { return 0.f; }); }
  static V load(const float* p) { return each([&](int i) { return p[i]; }); }
  static void store(float* p, V v) { std::memcpy(p, v.v, sizeof v.v); }
  static V set1(float f) { return each([&](int) { return f; }); }
  static V fma(V a, V b, V c) { return each([&](int i) { return a.v[i] * b.v[i] + c.v[i]; }); }
  static V add(V a, V b) { return each([&](int i) { return a.v[i] + b.v[i]; }); }
  // As _mm256_max_ps: the second operand when either is NaN.
  static V max(V a, V b) { return each([&](int i) { return a.v[i] > b.v[i] ? a.v[i] : b.v[i]; }); }
  static V sub(V a, V b) { return each([&](int i) { return a.v[i] - b.v[i]; }); }
  static V where_positive(V a, V g) { return each([&](int i) { return a.v[i] > 0.f ? g.v[i] : 0.f; }); }
  static V load_first(const float* p, int64_t n) { return each([&](int i) { return i < n ? p[i] : 0.f; }); }
  static void store_first(float* p, V v, int64_t n) { std::memcpy(p, v.v, sizeof(float) * static_cast<std::size_t>(n)); }
};
#include "gemm_kernel.inc"
#include "conv3x3_weight_grad.inc"
#include "winograd_kernel.inc"
}  // namespace densetorch::kernels::portable
