// A matrix product whose left operand is normalised on the fly: out = relu(x * scale + shift) @ w^T
// (+ bias, then ReLU), rows of x being pixels (channels-last) and w a 1x1 convolution's weight.
// This is a dense layer's batch norm + ReLU + 1x1 convolution in one pass over the concatenated
// features: the normalised input is formed tile by tile in the cache and never written to memory.
// Plain C++ (no LibTorch headers): a portable variant and AVX2 and AVX-512 micro-kernels, one
// picked per process from kernels::capability() (dispatch.h).
#pragma once

#include <cstdint>

namespace densetorch::norm_gemm {

// Whether the kernel computes n output channels (a multiple of 16). Every variant does; the
// portable one is the reference and the path of tests, slower than LibTorch's convolutions, so
// the model runs norm_gemm only where accelerated() (convolutions.cpp).
bool available(int64_t n);

// Whether the variant this process runs is an ISA one (AVX2 or AVX-512), not the portable one.
bool accelerated();

// The variant this process runs: "avx512", "avx2" or "default" (DENSETORCH_CPU_CAPABILITY picks
// a lower one: tests, measurements).
const char* kernel_name();

// w (row-major [n][k]) rearranged into the panels the micro-kernels read: n * k floats, one
// panel of panel_width(n) output channels after another (panel j0 at packed + j0 * k).
void pack_weight(const float* w, int64_t n, int64_t k, float* packed);
// The output channels per panel for n (a range of whole panels with the same width can be
// computed on its own: Args with packed + j0 * k, bias + j0, out + j0).
int64_t panel_width(int64_t n);

struct Args {
  const float* x;       // rows of k values, row r at x + r * ldx
  int64_t ldx;
  int64_t k;
  const float* scale;   // [k]: x * scale + shift, then ReLU; null: x as it is (a plain 1x1 convolution)
  const float* shift;   // [k]
  const float* packed;  // pack_weight of [n][k]
  int64_t n;
  const float* bias;    // [n] or null
  bool relu;            // ReLU on the output
  float* out;           // rows of n values, row r at out + r * ldo
  int64_t ldo;
};

// Rows [begin, end) of the product on the calling thread (callers split rows between threads).
void rows(const Args& a, int64_t begin, int64_t end);

// A 3x3 convolution (stride 1, padding 1, no bias) as the same product, without the batch norm:
// an output pixel's row of the left operand is its 3 x 3 window of input pixels (zeros outside the
// image), gathered tile by tile in the cache and never written to memory. For small images
// (late blocks at small batches), where a direct convolution splits poorly between threads.
struct Conv3x3Args {
  const float* x;       // input pixels: image i, row h, column w at x + ((i * H + h) * W + w) * ldx
  int64_t ldx;
  int64_t k;            // input channels
  int64_t H, W;
  const float* packed;  // pack_weight of [n][9 * k]: the weight [n][k][3][3] as [n][3][3][k]
  int64_t n;            // output channels (available(n))
  float* out;           // output pixels, ldo apart, in the input's order
  int64_t ldo;
};

// Output pixels [begin, end) (of N * H * W) on the calling thread.
void conv3x3_rows(const Conv3x3Args& a, int64_t begin, int64_t end);

// The backward of the product without bias and output ReLU, with batch statistics: from
// grad = d out, the weight's gradient and the part of x's gradient that passes through the ReLU
// and the scale, in one pass over x (the normalised input is recomputed tile by tile in the cache;
// the input gradient of the normalised input is never written either).
//   gy = (grad @ w)[r][i] where x[r][i] * scale[i] + shift[i] > 0, else 0
//   grad_x[r][i] += scale[i] * gy;  sum_gy[i] += gy;  sum_gy_dx[i] += gy * (x[r][i] - mean[i])
//   grad_weight[j][i] += sum over rows of grad[r][j] * relu(x[r][i] * scale[i] + shift[i])
// The rest of batch norm's input gradient (affine in x) is the caller's, from the two sums.
int64_t padded_k(int64_t k);  // rows of grad_weight: k rounded up to 16
// w ([n][k] row-major) as the backward reads it, n * padded_k(k) floats: panels of a few vectors
// of columns (zero past k), each panel's n rows contiguous, so the product walks it sequentially
// (rows of 2 or 4 KiB read down a column all fall in the same sets of the L1 cache).
void pack_backward_weight(const float* w, int64_t n, int64_t k, float* packed);

struct BackwardArgs {
  const float* x;
  int64_t ldx;
  int64_t k;
  const float* scale;
  const float* shift;
  const float* mean;
  const float* grad;       // rows of n values, ldg apart
  int64_t ldg;
  int64_t n;
  const float* weight;     // pack_backward_weight of [n][k]
  float* grad_x;           // rows of k values, ldgx apart: accumulated
  int64_t ldgx;
  float* grad_weight;      // [n][padded_k(k)]: accumulated (one per calling thread)
  double* sum_gy;          // [k]: accumulated (one per calling thread)
  double* sum_gy_dx;       // [k]
};

// Rows [begin, end) on the calling thread.
void backward_rows(const BackwardArgs& a, int64_t begin, int64_t end);

}  // namespace densetorch::norm_gemm
