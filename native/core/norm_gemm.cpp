#include "norm_gemm.h"
#include "env_switches.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define DT_NORM_GEMM_X86 1
#endif

namespace densetorch::norm_gemm {

namespace {

// Rows normalised at a time: a tile of kTileRows x k floats stays in the core's L2 while every
// panel of output channels reads it (48: a multiple of each micro-kernel's row count).
constexpr int64_t kTileRows = 48;
// Backward's tiles for 128 output channels or more: the weight-gradient product sums over a
// tile's rows into accumulators it loads and stores once per tile, and 64 rows amortise that
// better (one core, 12,544 rows x 128 outputs: k = 288..1024 5-11% faster than 48 rows; 96 rows
// no faster, the tiles then leave L2). With 48 outputs 64 rows were 5-10% slower.
int64_t backward_tile_rows(int64_t n) { return n >= 128 ? 64 : kTileRows; }
// Vectors per panel of the backward's packed weight (pack_backward_weight, data_grad).
constexpr int kDataVectors = 3;

// Vectors per panel of output channels: the widest of 4 (AVX-512 only), 3, 2, 1 vectors that
// divides n (wider panels read the normalised tile fewer times). With AVX2's 16 registers a
// 4-vector panel leaves room for 2 rows only (8 accumulators, more loads than FMAs can hide), so
// AVX2 stops at 3 (4 rows) and 2 (6 rows): 12 accumulators.
int panel_vectors(int64_t n, int64_t width) {
  const int64_t vectors = n / width;
  for (int v : {4, 3, 2})
    if (vectors % v == 0 && (v < 4 || width == 16)) return v;
  return 1;
}

// Winograd tiles per block: the block's 16 transformed windows (c per tile) and 16 products (k per
// tile) take 64 * (c + k) bytes a tile; 256 KiB of them leave the core's L2 room for the packed
// weights. A multiple of 12 (every AVX2 micro-kernel's row count divides it).
int64_t winograd_block(int64_t c, int64_t k) { return std::max<int64_t>(12, 4096 / (c + k) / 12 * 12); }

}  // namespace

int64_t padded_k(int64_t k) { return (k + 15) / 16 * 16; }

#ifdef DT_NORM_GEMM_X86
// GCC 12 reports the _mm512_undefined_ps() inside _mm512_max_ps as maybe uninitialised.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
// 32 vector registers: MR x NV accumulators + NV weight vectors + 1 broadcast.
#pragma GCC push_options
#pragma GCC target("avx512f")
namespace avx512 {
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
#include "norm_gemm_kernel.inc"
}  // namespace avx512
#pragma GCC pop_options

// 16 vector registers.
#pragma GCC push_options
#pragma GCC target("avx2,fma")
namespace avx2 {
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
#include "norm_gemm_kernel.inc"
}  // namespace avx2
#pragma GCC pop_options
#pragma GCC diagnostic pop
#endif

namespace {

enum class Kernel { kNone, kAvx2, kAvx512 };

Kernel detect() {
  const std::string asked = env_choice("DENSETORCH_NORM_GEMM", {"0", "avx2", "avx512"}, "");
  if (asked == "0") return Kernel::kNone;
#ifdef DT_NORM_GEMM_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && asked != "avx2") return Kernel::kAvx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Kernel::kAvx2;
#endif
  return Kernel::kNone;
}

Kernel kernel() {
  static const Kernel k = detect();
  return k;
}

int64_t vector_width() { return kernel() == Kernel::kAvx512 ? 16 : 8; }

}  // namespace

const char* kernel_name() {
  switch (kernel()) {
    case Kernel::kAvx512: return "avx512";
    case Kernel::kAvx2: return "avx2";
    default: return "none";
  }
}

namespace {
// Each dispatcher below is reached only after its *_available() check said yes; a caller that
// skipped the check gets an exception (turned into a JS error at the boundary), never an abort.
[[noreturn]] void no_kernel(const char* check) {
  throw std::logic_error(std::string("densetorch: no kernel for this CPU; ") + check + "() must be checked first");
}
}  // namespace

bool available(int64_t n) { return kernel() != Kernel::kNone && n > 0 && n % 16 == 0; }

void pack_weight(const float* w, int64_t n, int64_t k, float* packed) {
  const int64_t width = panel_vectors(n, vector_width()) * vector_width();
  for (int64_t j0 = 0; j0 < n; j0 += width)
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < width; ++j) packed[j0 * k + i * width + j] = w[(j0 + j) * k + i];
}

void rows(const Args& a, int64_t begin, int64_t end) {
#ifdef DT_NORM_GEMM_X86
  if (kernel() == Kernel::kAvx512) return avx512::rows(a, begin, end);
  if (kernel() == Kernel::kAvx2) return avx2::rows(a, begin, end);
#endif
  no_kernel("available");
}

void pack_backward_weight(const float* w, int64_t n, int64_t k, float* packed) {
  const int64_t width = vector_width(), kp = padded_k(k);
  for (int64_t c0 = 0; c0 < kp; c0 += kDataVectors * width) {
    const int64_t pw = std::min<int64_t>(kDataVectors * width, kp - c0);
    float* panel = packed + c0 * n;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t c = 0; c < pw; ++c) panel[j * pw + c] = c0 + c < k ? w[j * k + c0 + c] : 0.f;
  }
}

void backward_rows(const BackwardArgs& a, int64_t begin, int64_t end) {
#ifdef DT_NORM_GEMM_X86
  if (kernel() == Kernel::kAvx512) return avx512::backward_rows(a, begin, end);
  if (kernel() == Kernel::kAvx2) return avx2::backward_rows(a, begin, end);
#endif
  no_kernel("available");
}

bool conv3x3_weight_grad_available(int64_t n, int64_t c) {
  // AVX2 only: measured there (Zen 3, 2 threads: 1.5-2.6x oneDNN's AVX2 weight gradient at 8x8 to
  // 56x56 pixels); on AVX-512 CPUs oneDNN's own stays until it is measured against this.
#ifdef DT_NORM_GEMM_X86
  if (kernel() == Kernel::kAvx2) return n > 0 && n % avx2::Isa::kWeightRows == 0 && c > 0 && c % 16 == 0;
#endif
  return false;
}

void conv3x3_weight_grad_rows(const float* grad, int64_t n, const float* x, int64_t c, int64_t row, int64_t begin,
                              int64_t end, float* grad_weight) {
#ifdef DT_NORM_GEMM_X86
  if (kernel() == Kernel::kAvx2) return avx2::conv3x3_weight_grad_rows(grad, n, x, c, row, begin, end, grad_weight);
#endif
  no_kernel("conv3x3_weight_grad_available");
}

bool winograd_available(int64_t c, int64_t k) {
  // AVX2 only, as the weight gradient above: measured against oneDNN's direct convolution there.
  // DENSETORCH_WINOGRAD=0 turns it off (measurements, an escape hatch).
#ifdef DT_NORM_GEMM_X86
  static const bool enabled = env_flag("DENSETORCH_WINOGRAD", true);
  if (enabled && kernel() == Kernel::kAvx2) return c > 0 && k > 0;
#endif
  return false;
}

int64_t winograd_channels(int64_t n) { return (n + 7) / 8 * 8; }

int64_t winograd_size(int64_t c, int64_t k) { return 16 * winograd_channels(k) * winograd_channels(c); }

void pack_winograd_weight(const float* w, int64_t k, int64_t c, float* packed) {
  // U = G g G^T, G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2], [0, 0, 1]]: 16 matrices [kp][cp],
  // zero past k rows and c columns (the products then run on whole vectors).
  const int64_t kp = winograd_channels(k), cp = winograd_channels(c);
  std::vector<float> u(static_cast<std::size_t>(16 * kp * cp), 0.f);
  for (int64_t o = 0; o < k; ++o)
    for (int64_t i = 0; i < c; ++i) {
      const float* g = w + (o * c + i) * 9;
      float gg[4][3];  // G g
      for (int col = 0; col < 3; ++col) {
        gg[0][col] = g[col];
        gg[1][col] = 0.5f * (g[col] + g[3 + col] + g[6 + col]);
        gg[2][col] = 0.5f * (g[col] - g[3 + col] + g[6 + col]);
        gg[3][col] = g[6 + col];
      }
      for (int r = 0; r < 4; ++r) {
        const float row[4] = {gg[r][0], 0.5f * (gg[r][0] + gg[r][1] + gg[r][2]), 0.5f * (gg[r][0] - gg[r][1] + gg[r][2]),
                              gg[r][2]};
        for (int col = 0; col < 4; ++col) u[((4 * r + col) * kp + o) * cp + i] = row[col];
      }
    }
  for (int p = 0; p < 16; ++p) pack_weight(u.data() + p * kp * cp, kp, cp, packed + p * kp * cp);
}

int64_t winograd_tile_count(int64_t N, int64_t H, int64_t W) { return N * ((H + 1) / 2) * ((W + 1) / 2); }

void winograd_tiles(const WinogradArgs& a, int64_t begin, int64_t end) {
#ifdef DT_NORM_GEMM_X86
  if (kernel() == Kernel::kAvx2) return avx2::winograd_tiles(a, begin, end);
#endif
  no_kernel("winograd_available");
}

void winograd_weight_grad_tiles(const WinogradGradArgs& a, int64_t begin, int64_t end, float* u) {
#ifdef DT_NORM_GEMM_X86
  if (kernel() == Kernel::kAvx2) return avx2::winograd_weight_grad_tiles(a, begin, end, u);
#endif
  no_kernel("winograd_available");
}

void winograd_weight_grad_finish(const float* u, int64_t k, int64_t c, float* grad_weight) {
  // G^T = [[1, 1/2, 1/2, 0], [0, 1/2, -1/2, 0], [0, 1/2, 1/2, 1]]: (G^T u) G, for every (j, i).
  const int64_t kp = winograd_channels(k), cp = winograd_channels(c);
  for (int64_t j = 0; j < k; ++j)
    for (int64_t i = 0; i < c; ++i) {
      float m[4][4];
      for (int p = 0; p < 16; ++p) m[p / 4][p % 4] = u[(p * kp + j) * cp + i];
      float t[3][4];
      for (int col = 0; col < 4; ++col) {
        t[0][col] = m[0][col] + 0.5f * (m[1][col] + m[2][col]);
        t[1][col] = 0.5f * (m[1][col] - m[2][col]);
        t[2][col] = 0.5f * (m[1][col] + m[2][col]) + m[3][col];
      }
      float* g = grad_weight + (j * c + i) * 9;
      for (int r = 0; r < 3; ++r) {
        g[3 * r + 0] = t[r][0] + 0.5f * (t[r][1] + t[r][2]);
        g[3 * r + 1] = 0.5f * (t[r][1] - t[r][2]);
        g[3 * r + 2] = 0.5f * (t[r][1] + t[r][2]) + t[r][3];
      }
    }
}

}  // namespace densetorch::norm_gemm
