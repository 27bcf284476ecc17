// The convolutions of the fused dense block and which implementation computes each: LibTorch's
// (oneDNN; the portable path, always there), or densetorch's own kernels (kernels/) where an ISA
// variant of them runs in this process and measured faster: the 1x1 convolution with batch norm
// + ReLU inside (norm_gemm), Winograd's 3x3 convolution and input gradient, the 3x3 weight
// gradient (Winograd's or the nine taps'). docs/design.md has the table.
#pragma once

#include "kernels/panel.h"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <algorithm>
#include <atomic>
#include <utility>
#include <vector>

namespace densetorch::convolutions {

using kernels::Panel;

// at::parallel_for over [begin, end) with the range handed out in chunks as the threads ask for
// them instead of one fixed share each: a thread whose core runs slower for a while (another
// tenant on it) takes fewer chunks instead of keeping the others waiting at the end. For loops
// whose iterations write disjoint outputs only (no per-thread sums): which thread runs a chunk
// changes nothing in the result. Chunks are whole multiples of `multiple` (a kernel's row tile)
// except the last.
template <class F>
void parallel_chunks(int64_t begin, int64_t end, int64_t grain, const F& f, int64_t multiple = 1) {
  const int64_t threads = at::get_num_threads();
  const int64_t share = std::max<int64_t>(grain, (end - begin + 8 * threads - 1) / (8 * threads));
  const int64_t chunk = (share + multiple - 1) / multiple * multiple;
  if (threads <= 1 || end - begin <= chunk || at::in_parallel_region()) return f(begin, end);
  std::atomic<int64_t> next{begin};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t b = next.fetch_add(chunk); b < end; b = next.fetch_add(chunk)) f(b, std::min(end, b + chunk));
  });
}

// batch_norm(x) as x * scale + shift: invstd = 1 / sqrt(var + eps), scale = gamma * invstd,
// shift = beta - mean * scale.
struct NormAffine {
  at::Tensor scale, shift, invstd;
};
NormAffine affine(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& var,
                  double eps);
// affine() of a batch norm's running statistics, for evaluation: without gradients the result is
// kept while the four tensors live unchanged (their versions), so a prediction skips recomputing it.
NormAffine running_affine(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& running_mean,
                          const at::Tensor& running_var, double eps);

// Whether densetorch's own 3x3 kernels (Winograd, the nine-tap weight gradient) may run in this
// process instead of LibTorch's: the measured rule per instruction set, or DENSETORCH_WINOGRAD.
bool own_conv3x3();

// The dtype the block's LibTorch convolutions run in: bfloat16 under CPU autocast, else float32.
at::ScalarType compute_dtype();

// A stride-1 convolution in `compute`; the result in `compute` too.
at::Tensor conv(at::ScalarType compute, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                int64_t padding);

// Whether norm_relu_conv1x1 runs densetorch's kernel for this weight in `compute`.
bool norm_gemm_runs(at::ScalarType compute, const at::Tensor& weight);

// conv1x1(relu(x * scale + shift), weight) (+ bias, then ReLU when `relu`) in one pass over the
// panel x (conv1x1(x, weight) when scale and shift are undefined): a new channels-last tensor; undefined when norm_gemm_runs says no (the caller then
// normalises into storage and convolves).
at::Tensor norm_relu_conv1x1(at::ScalarType compute, const at::Tensor& x, const at::Tensor& scale,
                             const at::Tensor& shift, const at::Tensor& weight, const at::Tensor& bias, bool relu);

// Its backward (no bias, no output ReLU) with batch statistics, in one pass over x: gx accumulates
// the part of x's gradient that passes the ReLU and the scale; returns the weight's gradient and
// the sums batch norm's backward takes.
std::pair<at::Tensor, std::pair<std::vector<double>, std::vector<double>>> norm_relu_conv1x1_backward(
    const at::Tensor& grad, const Panel& x, const Panel& gx, const NormAffine& a, const at::Tensor& mean,
    const at::Tensor& weight);

// Whether a 3x3 convolution of x with `weight` and `padding` runs through conv3x3_gemm: in
// evaluation (no gradients), float32, padding 1, a multiple of 16 output channels, and few output
// pixels in the batch (late blocks at small batches).
bool gemm3x3_runs(at::ScalarType compute, const at::Tensor& x, const at::Tensor& weight, int64_t padding);

// dst = conv3x3(x, weight) (stride 1, padding 1) through norm_gemm's product, each pixel's 3x3
// window gathered in the cache: x and dst channels-last float32 panels (dst may be a channel range
// of a block buffer), weight [n, c, 3, 3] (packed once per weight version).
void conv3x3_gemm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& dst);

// Whether a convolution with `weight` and `padding` over H x W images runs through the Winograd
// kernel in `compute`: its forward (c -> k channels) or its input gradient (k -> c).
bool winograd_runs(at::ScalarType compute, const at::Tensor& weight, int64_t padding, int64_t H, int64_t W,
                   bool forward);

// dst = conv3x3(x, weight) (stride 1, padding 1; of relu(x * scale + shift) when scale is
// defined) through the Winograd kernel: x and dst channels-last float32 panels.
void conv3x3_winograd(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& weight,
                      const at::Tensor& dst);

// A convolution's backward in `compute`: the gradient of the input in `compute`, of the weight in
// float32, each through the implementation that runs it.
std::pair<at::Tensor, at::Tensor> conv_backward(at::ScalarType compute, const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& weight, int64_t padding);

}  // namespace densetorch::convolutions
