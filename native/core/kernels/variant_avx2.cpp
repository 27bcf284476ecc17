// The AVX2 + FMA variant of every GEMM-based kernel: norm_gemm's micro-kernels (gemm_kernel.inc),
// the nine-tap 3x3 weight gradient and Winograd's F(2x2, 3x3) built on them. 16 vector registers.
#include "variants.h"

#include <cstring>
#include <vector>

#ifdef DT_KERNELS_X86
#include <immintrin.h>

DT_ISA_BEGIN("avx2,fma")
namespace densetorch::kernels::avx2 {
struct Isa {
  using V = __m256;
  static constexpr int64_t kWidth = 8;
  static constexpr int rows_for(int nv) { return nv == 4 ? 2 : nv == 3 ? 4 : nv == 2 ? 6 : 12; }  // 4: unused
  static constexpr int kWeightRows = 4, kWeightVectors = 3, kDataRows = 4, kEpilogueVectors = 2;
  // Zen 3, one core, 64 rows x 128 outputs: k = 288/512/1024 76/62/45 -> 86/67/51 GFLOP/s.
  static constexpr bool kWeightPanelsOuter = true;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V set1(float f) { return _mm256_set1_ps(f); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static V max(V a, V b) { return _mm256_max_ps(a, b); }
  static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  static V where_positive(V a, V g) { return _mm256_and_ps(_mm256_cmp_ps(a, zero(), _CMP_GT_OQ), g); }
  // The lanes below n (0 < n <= kWidth) set: 8 of the 16 words from 8 - n on.
  static __m256i first(int64_t n) {
    static const int32_t words[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(words + 8 - n));
  }
  // The first n floats at p, zeros after them; nothing past p + n is read.
  static V load_first(const float* p, int64_t n) { return _mm256_maskload_ps(p, first(n)); }
  // Stores the first n floats of v at p; nothing past p + n is written.
  static void store_first(float* p, V v, int64_t n) { _mm256_maskstore_ps(p, first(n), v); }
};
#include "gemm_kernel.inc"
#include "conv3x3_weight_grad.inc"
#include "winograd_kernel.inc"
}  // namespace densetorch::kernels::avx2
DT_ISA_END
#endif
