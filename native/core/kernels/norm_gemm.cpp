#include "norm_gemm.h"

#include "variants.h"

#include <algorithm>

namespace densetorch::norm_gemm {

using kernels::Capability;
using kernels::KernelTable;

namespace {

// The tables register the same instruction sets, so all pick the same.
const KernelTable<kernels::RowsFn> kRows{kernels::portable::rows, DT_X86(kernels::avx2::rows),
                                         DT_X86(kernels::avx512::rows)};
const KernelTable<kernels::Conv3x3RowsFn> kConv3x3Rows{kernels::portable::conv3x3_rows,
                                                       DT_X86(kernels::avx2::conv3x3_rows),
                                                       DT_X86(kernels::avx512::conv3x3_rows)};
const KernelTable<kernels::BackwardRowsFn> kBackwardRows{kernels::portable::backward_rows,
                                                         DT_X86(kernels::avx2::backward_rows),
                                                         DT_X86(kernels::avx512::backward_rows)};

}  // namespace

bool available(int64_t n) { return n > 0 && n % 16 == 0; }

bool accelerated() { return kRows.selected().isa != Capability::kDefault; }

const char* kernel_name() { return kernels::name(kRows.selected().isa); }

int64_t padded_k(int64_t k) { return (k + 15) / 16 * 16; }

void pack_weight(const float* w, int64_t n, int64_t k, float* packed) {
  kernels::pack_panels(w, n, k, packed, kernels::vector_width(kRows.selected().isa));
}

int64_t panel_width(int64_t n) {
  const int64_t vector = kernels::vector_width(kRows.selected().isa);
  return kernels::panel_vectors(n, vector) * vector;
}

void rows(const Args& a, int64_t begin, int64_t end) { kRows.selected().fn(a, begin, end); }

void conv3x3_rows(const Conv3x3Args& a, int64_t begin, int64_t end) { kConv3x3Rows.selected().fn(a, begin, end); }

void pack_backward_weight(const float* w, int64_t n, int64_t k, float* packed) {
  const int64_t width = kernels::vector_width(kBackwardRows.selected().isa), kp = padded_k(k);
  for (int64_t c0 = 0; c0 < kp; c0 += kernels::kDataVectors * width) {
    const int64_t pw = std::min<int64_t>(kernels::kDataVectors * width, kp - c0);
    float* panel = packed + c0 * n;
    for (int64_t j = 0; j < n; ++j)
      for (int64_t c = 0; c < pw; ++c) panel[j * pw + c] = c0 + c < k ? w[j * k + c0 + c] : 0.f;
  }
}

void backward_rows(const BackwardArgs& a, int64_t begin, int64_t end) { kBackwardRows.selected().fn(a, begin, end); }

}  // namespace densetorch::norm_gemm

namespace densetorch::kernels {

void pack_panels(const float* w, int64_t n, int64_t k, float* packed, int64_t vector) {
  const int64_t width = panel_vectors(n, vector) * vector;
  for (int64_t j0 = 0; j0 < n; j0 += width)
    for (int64_t i = 0; i < k; ++i)
      for (int64_t j = 0; j < width; ++j) packed[j0 * k + i * width + j] = w[(j0 + j) * k + i];
}

}  // namespace densetorch::kernels
