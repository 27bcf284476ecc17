// The per-pixel passes of the fused dense block over channels-last panels (panel.h), float32 or
// bfloat16: batch statistics, batch norm + ReLU (into a convolution's input, with 2x2 average or
// 3x3 max pooling), and their backward. Plain C++ the compiler vectorises, built for AVX-512,
// AVX2 + FMA and baseline x86-64 (target clones picked by the loader), with hand-written AVX-512
// variants of the bfloat16 stores where capability() allows them.
#pragma once

#include "panel.h"

#include <torch/torch.h>

#include <utility>
#include <vector>

namespace densetorch::norm_passes {

using kernels::Panel;

// Rows per parallel task at least.
constexpr int64_t kRowGrain = 64;

// Per-channel sums of a backward pass: of gy, and of gy * (x - mean).
using Sums = std::pair<std::vector<double>, std::vector<double>>;

// Row ranges for per-thread partial sums: one per thread, at least kRowGrain rows each.
int64_t row_chunks(int64_t rows);

// A float32 tensor of the values.
at::Tensor float_vector(const std::vector<double>& v);

// Mean and biased variance of every channel of a channels-last float32 or bfloat16 tensor (or a
// channel range of one), in two passes (exact for any offset).
std::pair<at::Tensor, at::Tensor> channel_stats(const at::Tensor& x);

// dst = src (channels-last tensors of one dtype, dst a channel range of a block buffer: the new
// features of a layer), in parallel. training: also returns src's batch statistics.
std::pair<at::Tensor, at::Tensor> append_features(const at::Tensor& src, const at::Tensor& dst, bool training);

// y = relu(x * scale + shift), x and y channels-last float32 or bfloat16 (each its own).
void norm_relu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& scale, const at::Tensor& shift);

// avg_pool2d(relu(x * scale + shift), 2, 2) in one pass, into a new channels-last tensor of x's
// dtype (odd last rows and columns dropped, as avg_pool2d without ceil_mode).
at::Tensor norm_relu_pool2(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift);

// The backward of norm_relu_pool2 with batch statistics, one pass over x: gp is the pooled map's
// gradient already multiplied by the window's weight (0.25); gx = scale * gy (written); returns
// the sums for batch norm's backward.
Sums norm_relu_pool2_grad(const at::Tensor& x, const at::Tensor& gp, const at::Tensor& gx, const at::Tensor& scale,
                          const at::Tensor& shift, const at::Tensor& mean);

// max_pool2d(relu(x * scale + shift), 3, stride 2, padding 1) (the ImageNet stem) in one pass.
at::Tensor norm_relu_maxpool(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift);

// Its backward up to the ReLU's output: gz (float32, x's shape) receives each output's gradient
// at its window's maximum (the first in scan order on ties, as max_pool2d).
void norm_relu_maxpool_grad(const at::Tensor& x, const at::Tensor& g, const at::Tensor& gz, const at::Tensor& scale,
                            const at::Tensor& shift);

// gx += k1 * (x - mean) + k0 over the rows, in parallel (x float32 or bfloat16).
void affine_add(const at::Tensor& x, const Panel& gx, const float* mean, const float* k1, const float* k0);

// g + k1 * (x - mean) + k0 into a new dense channels-last tensor of `dtype` (float32, or bfloat16
// for a bfloat16 convolution's backward).
at::Tensor affine_into(const at::Tensor& x, const Panel& g, const float* mean, const float* k1, const float* k0,
                       at::ScalarType dtype);

// The backward of relu(x * scale + shift) from its output's gradient g (float32 or bfloat16) into
// gx (written, or added to when `accumulate`) through the ReLU and the scale; returns the sums.
Sums norm_relu_grad(const at::Tensor& g, const at::Tensor& x, const Panel& gx, const at::Tensor& scale,
                    const at::Tensor& shift, const at::Tensor& mean, bool accumulate);

}  // namespace densetorch::norm_passes
