// The memory-efficient concatenation of Pleiss et al. (2017).
//
// Computes conv(relu(batch_norm(cat(features)))) in training mode while saving, for backward,
// only the inputs (each earlier layer's own output, which is alive anyway) and the per-channel
// batch statistics. The concatenation, the BN output and the ReLU output are recomputed in the
// backward pass instead of being kept, so memory grows linearly with depth, not quadratically.
#pragma once

#include <torch/torch.h>

namespace densetorch {

// Running statistics and hyper-parameters of the batch norm that sees the concatenation.
struct ConcatNormArgs {
  at::Tensor running_mean;
  at::Tensor running_var;
  double momentum;
  double eps;
};

// Training-mode forward: updates running statistics exactly as BatchNorm2d does (the caller
// increments num_batches_tracked). `padding` is the convolution's (0 for 1x1, 1 for 3x3).
at::Tensor efficient_concat_norm_relu_conv(at::TensorList features, const at::Tensor& norm_weight,
                                           const at::Tensor& norm_bias, const ConcatNormArgs& norm,
                                           const at::Tensor& conv_weight, int64_t padding);

}  // namespace densetorch
