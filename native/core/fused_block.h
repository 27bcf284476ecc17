// A whole dense block as one operation on the CPU (float32): one buffer holds every feature map
// of the block, the batch statistics of each feature are computed once, when it is produced
// (every later layer's batch norm reads the same per-channel mean and variance; only its own
// gamma and beta differ), batch norm + ReLU is one pass from the buffer into the convolution's
// input, and in backward one gradient buffer accumulates every layer's contribution to the
// features it read (batch norm, ReLU and the accumulation in one pass; no torch::cat, no
// per-feature gradient additions).
//
// The BN + ReLU outputs are never kept: backward recomputes them from the buffer and the
// statistics (one pass into storage every layer reuses, cheaper than writing and keeping fresh
// tensors). Naive mode keeps each bottleneck's 1x1 convolution output for backward; memory-
// efficient mode recomputes it where that is cheap (keeps_bottleneck_when_efficient), and a
// block keeps its buffer, per-channel statistics and those bottleneck outputs only: memory grows
// linearly with depth.
#pragma once

#include "efficient_concat.h"

#include <torch/torch.h>

#include <optional>
#include <vector>

namespace densetorch {

// One dense layer for the fused block: norm1 -> ReLU -> conv1 [-> norm2 -> ReLU -> conv2].
struct FusedLayerArgs {
  NormArgs norm1;               // momentum is used in training only
  at::Tensor conv1_weight;      // 1x1 (bottleneck) or 3x3
  int64_t padding1;             // conv1's padding
  std::optional<NormArgs> norm2;  // bottleneck layers only
  at::Tensor conv2_weight;      // 3x3, bottleneck layers only
};

// conv -> BatchNorm2d with running statistics (evaluation) as one convolution: each output
// channel's weights scaled and a bias (exact). Folded on every call: weights may change between
// calls, and scaling a convolution's weights costs little next to running it.
struct FoldedConv {
  at::Tensor weight, bias;
};
FoldedConv fold_norm_into_conv(const at::Tensor& conv_weight, const NormArgs& norm);

// A transition in evaluation mode, conv1x1(avg_pool2d(relu(batch_norm(x)), 2, 2)) with running
// statistics, for a CPU float32 x: batch norm, ReLU and pooling as one pass (the normalised map is
// never written), then the convolution through norm_gemm where it runs. A new channels-last tensor.
at::Tensor eval_transition(const at::Tensor& x, const NormArgs& norm, const at::Tensor& conv_weight);

// A transition in training mode, conv1x1(avg_pool2d(relu(batch_norm(x)), 2, 2)) with batch
// statistics (running statistics updated as BatchNorm2d does) on a CPU float32 x: BN + ReLU +
// pooling is one pass (the normalised full-size map is never written), the convolution runs on
// the pooled map, and backward is the convolution's backward plus one pass for pooling + ReLU +
// batch norm. Saves x and the statistics; keep_pooled also keeps the pooled map (a quarter of x),
// else backward pools again (memory-efficient mode).
at::Tensor fused_transition(const at::Tensor& x, const NormArgs& norm, const at::Tensor& conv_weight,
                            bool keep_pooled);

// The ImageNet stem after conv0, max_pool2d(relu(batch_norm(x)), 3, 2, 1), as one pass over a
// CPU float32 x. training: batch statistics (running statistics updated), and backward recomputes
// the normalised windows, so neither the normalised map nor the pooling's indices are kept;
// else the running statistics (no autograd).
at::Tensor fused_norm_relu_maxpool(const at::Tensor& x, const NormArgs& norm, bool training);

// Whether blocks run fused where they can (default: yes; DENSETORCH_FUSED=0 turns it off, for
// A/B measurements and as an escape hatch). set_fused_blocks overrides it for this process.
bool fused_blocks_enabled();
void set_fused_blocks(bool enabled);

// Whether the fused block (and the fused stem and transitions) can compute on `x` for a module
// whose parameters are like `weight`: CPU, float32 parameters, x float32 (or bfloat16 under
// bfloat16 autocast: then the LibTorch convolutions run in bfloat16 and everything else, the
// 1x1 convolutions with batch norm inside included, in float32), at least two values per channel
// (as batch norm requires in training).
bool fused_block_supported(const at::Tensor& x, bool training, const at::Tensor& weight);

// The block: x followed by every layer's growth_rate new channels, [N, C0 + L*k, H, W],
// channels-last. training: batch statistics (running statistics updated as BatchNorm2d does),
// else running statistics (and norm2 folded into conv1). With autograd recording, a custom
// autograd function whose backward returns the gradients of x and of every parameter.
at::Tensor fused_dense_block(const at::Tensor& x, const std::vector<FusedLayerArgs>& layers, int64_t growth_rate,
                             bool training, bool memory_efficient);

// Memory-efficient training: whether a bottleneck layer reading in_channels channels keeps its
// 1x1 convolution's output (4k channels) for backward instead of recomputing it. Recomputing costs
// in_channels x 4k multiply-adds per pixel, keeping costs 4k floats per pixel whatever the input
// width, so the wide layers late in a block are where recomputation costs the most per byte
// saved. A layer keeps it when in_channels > 6k, i.e. when recomputing would add more than 2/15
// of the layer's training work (in x 4k of 3 x (in x 4k + 9 x 4k x k): both convolutions forward
// and their two backward products). 6k rather than 9k (a sixth): DenseNet-121 recomputes 37%
// fewer multiply-adds (5.7% -> 3.6% of a training step's), DenseNet-BC-100 57% fewer (3.2% ->
// 1.4%), for a one-step peak 29 and 39 MiB higher (batch 16: 416 -> 445 MiB over the model's own,
// batch 64: 400 -> 439), still 153 and 78 MiB under naive mode's.
// DENSETORCH_RECOMPUTE=all recomputes every layer's, =<t> keeps those with in_channels > t x k
// (for measurements).
constexpr double kKeepBottleneckAbove = 6.0;
bool keeps_bottleneck_when_efficient(int64_t in_channels, int64_t growth_rate);

}  // namespace densetorch
