// The variants of the GEMM-based kernels (norm_gemm, the 3x3 weight gradient, Winograd), each
// built from the same micro-kernel source (gemm_kernel.inc and the files after it) for one
// instruction set: portable (variant_portable.cpp), AVX2 (variant_avx2.cpp), AVX-512
// (variant_avx512.cpp). The public entry points (norm_gemm.cpp, conv3x3_weight_grad.cpp,
// winograd.cpp) pick one from their tables (dispatch.h). Internal to native/core/kernels.
#pragma once

#include "conv3x3_weight_grad.h"
#include "dispatch.h"
#include "norm_gemm.h"
#include "winograd.h"

#include <algorithm>
#include <cstdint>

namespace densetorch::kernels {

// The names the micro-kernel sources use.
using norm_gemm::Args;
using norm_gemm::BackwardArgs;
using norm_gemm::Conv3x3Args;
using norm_gemm::padded_k;
using WinogradInput = winograd::Input;
using WinogradArgs = winograd::Args;
using WinogradGradArgs = winograd::GradArgs;
inline int64_t winograd_channels(int64_t n) { return winograd::channels(n); }

// Rows normalised at a time: a tile of kTileRows x k floats stays in the core's L2 while every
// panel of output channels reads it (48: a multiple of each micro-kernel's row count).
constexpr int64_t kTileRows = 48;
// Backward's tiles for 128 output channels or more: the weight-gradient product sums over a
// tile's rows into accumulators it loads and stores once per tile, and 64 rows amortise that
// better (one core, 12,544 rows x 128 outputs: k = 288..1024 5-11% faster than 48 rows; 96 rows
// no faster, the tiles then leave L2). With 48 outputs 64 rows were 5-10% slower.
inline int64_t backward_tile_rows(int64_t n) { return n >= 128 ? 64 : kTileRows; }
// Vectors per panel of the backward's packed weight (pack_backward_weight, data_grad).
constexpr int kDataVectors = 3;

// Vectors per panel of output channels: the widest of 4 (AVX-512 only), 3, 2, 1 vectors that
// divides n (wider panels read the normalised tile fewer times). With AVX2's 16 registers a
// 4-vector panel leaves room for 2 rows only (8 accumulators, more loads than FMAs can hide), so
// AVX2 stops at 3 (4 rows) and 2 (6 rows): 12 accumulators.
inline int panel_vectors(int64_t n, int64_t width) {
  const int64_t vectors = n / width;
  for (int v : {4, 3, 2})
    if (vectors % v == 0 && (v < 4 || width == 16)) return v;
  return 1;
}

// Winograd tiles per block: the block's 16 transformed windows (c per tile) and 16 products (k per
// tile) take 64 * (c + k) bytes a tile; 256 KiB of them leave the core's L2 room for the packed
// weights. A multiple of 12 (every 8-float micro-kernel's row count divides it).
inline int64_t winograd_block(int64_t c, int64_t k) { return std::max<int64_t>(12, 4096 / (c + k) / 12 * 12); }

// Floats per vector of a variant: 16 for AVX-512, 8 for AVX2 and the portable one.
inline int64_t vector_width(Capability isa) { return isa == Capability::kAvx512 ? 16 : 8; }

// w (row-major [n][k]) rearranged into the panels a variant of `width`-float vectors reads.
void pack_panels(const float* w, int64_t n, int64_t k, float* packed, int64_t width);

using RowsFn = void (*)(const Args&, int64_t, int64_t);
using Conv3x3RowsFn = void (*)(const Conv3x3Args&, int64_t, int64_t);
using BackwardRowsFn = void (*)(const BackwardArgs&, int64_t, int64_t);
using WeightGradRowsFn = void (*)(const float*, int64_t, const float*, int64_t, int64_t, int64_t, int64_t, float*);
using WinogradTilesFn = void (*)(const WinogradArgs&, int64_t, int64_t);
using WinogradGradTilesFn = void (*)(const WinogradGradArgs&, int64_t, int64_t, float*);

#define DT_GEMM_VARIANT_DECLARATIONS                                                                          \
  void rows(const Args& a, int64_t begin, int64_t end);                                                       \
  void conv3x3_rows(const Conv3x3Args& a, int64_t begin, int64_t end);                                        \
  void backward_rows(const BackwardArgs& a, int64_t begin, int64_t end);

#define DT_3X3_VARIANT_DECLARATIONS                                                                       \
  void conv3x3_weight_grad_rows(const float* grad, int64_t n, const float* x, int64_t c, int64_t row,          \
                                int64_t begin, int64_t end, float* grad_weight);                              \
  int conv3x3_weight_rows();                                                                                   \
  void winograd_tiles(const WinogradArgs& a, int64_t begin, int64_t end);                                      \
  void winograd_weight_grad_tiles(const WinogradGradArgs& a, int64_t begin, int64_t end, float* u);

namespace portable {
DT_GEMM_VARIANT_DECLARATIONS
DT_3X3_VARIANT_DECLARATIONS
}  // namespace portable

#ifdef DT_KERNELS_X86
namespace avx2 {
DT_GEMM_VARIANT_DECLARATIONS
DT_3X3_VARIANT_DECLARATIONS
}  // namespace avx2
namespace avx512 {
DT_GEMM_VARIANT_DECLARATIONS
}  // namespace avx512
#endif

#undef DT_GEMM_VARIANT_DECLARATIONS
#undef DT_3X3_VARIANT_DECLARATIONS

}  // namespace densetorch::kernels
