// The AVX-512F variant of norm_gemm's micro-kernels (gemm_kernel.inc): 32 vector registers,
// MR x NV accumulators + NV weight vectors + 1 broadcast. (Winograd's transforms and the nine-tap
// weight gradient have no AVX-512 variant: their 8-float layout is AVX2's, which AVX-512 CPUs run.)
#include "variants.h"

#include <cstring>
#include <vector>

#ifdef DT_KERNELS_X86
#include <immintrin.h>

// GCC 12 reports the _mm512_undefined_ps() inside _mm512_max_ps as maybe uninitialised.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
DT_ISA_BEGIN("avx512f")
namespace densetorch::kernels::avx512 {
struct Isa {
  using V = __m512;
  static constexpr int64_t kWidth = 16;
  static constexpr int rows_for(int nv) { return nv == 4 ? 6 : nv == 3 ? 8 : 12; }
  static constexpr int kWeightRows = 8, kWeightVectors = 3, kDataRows = 8, kEpilogueVectors = 4;
  static constexpr bool kWeightPanelsOuter = false;  // panels outermost measured 126 vs 144 GFLOP/s
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V set1(float f) { return _mm512_set1_ps(f); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static V max(V a, V b) { return _mm512_max_ps(a, b); }
  static V sub(V a, V b) { return _mm512_sub_ps(a, b); }
  static V where_positive(V a, V g) { return _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(a, zero(), _CMP_GT_OQ), g); }
  // The first n (0 < n <= kWidth) floats at p, zeros after them; nothing past p + n is read.
  static V load_first(const float* p, int64_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
  }
  // Stores the first n floats of v at p; nothing past p + n is written.
  static void store_first(float* p, V v, int64_t n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
  }
};
#include "gemm_kernel.inc"
}  // namespace densetorch::kernels::avx512
DT_ISA_END
#pragma GCC diagnostic pop
#endif
