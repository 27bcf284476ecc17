// The weight gradient of a 3x3 convolution (stride 1, padding 1) by densetorch's own kernel:
// nine products of norm_gemm's weight-gradient micro-kernel, one per tap (conv3x3_weight_grad.inc).
#pragma once

#include <cstdint>

namespace densetorch::conv3x3 {

// The weight gradient of a 3x3 convolution (stride 1, padding 1) from n output channels to c
// input channels, as nine products of the same micro-kernel, one per tap: on a grid of images
// zero-padded to (H + 2) x (W + 2) pixels, flattened, the tap (kh, kw) of output pixel p reads
// input pixel p + kh * (W + 2) + kw. Whether the variant this process runs computes it for n and c
// (c a multiple of 16, n of the micro-kernel's row block).
bool weight_grad_available(int64_t n, int64_t c);

// Whether that variant is an ISA one (AVX2), not the portable one; and which ("avx2", "default").
bool accelerated();
const char* kernel_name();

// grad_weight[3 * kh + kw][j][i] += sum over grid pixels p in [begin, end) of grad[p][j] *
// x[p + kh * row + kw][i]: grad's rows of n values (zero outside the H x W output), x's rows of c
// values (zero border; 2 * row + 2 rows readable past the grid), row = W + 2.
void weight_grad_rows(const float* grad, int64_t n, const float* x, int64_t c, int64_t row, int64_t begin,
                      int64_t end, float* grad_weight);

}  // namespace densetorch::conv3x3
