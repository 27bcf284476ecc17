// The memory-efficient concatenation of Pleiss et al. (2017).
//
// Computes conv(relu(batch_norm(cat(features)))) in training mode while saving, for backward,
// only the inputs (each earlier layer's own output, which is alive anyway) and the per-channel
// batch statistics. The concatenation, the BN output and the ReLU output are recomputed in the
// backward pass instead of being kept, so memory grows linearly with depth, not quadratically.
#pragma once

#include <torch/torch.h>

namespace densetorch {

// A training-mode batch norm: affine parameters, running statistics (updated in place as
// BatchNorm2d does; the caller increments num_batches_tracked) and hyper-parameters.
struct NormArgs {
  at::Tensor weight;
  at::Tensor bias;
  at::Tensor running_mean;
  at::Tensor running_var;
  double momentum;
  double eps;
};

// The features as one tensor along the channels: the only one itself (no copy), else their
// concatenation.
at::Tensor cat_features(at::TensorList features);

// conv(relu(norm(cat(features)))); `padding` is the convolution's (0 for 1x1, 1 for 3x3). With
// pool > 1 the normalised features are average-pooled pool x pool (stride pool) before the
// convolution. Saves the features and the batch statistics.
at::Tensor efficient_concat_norm_relu_conv(at::TensorList features, const NormArgs& norm, const at::Tensor& conv_weight,
                                           int64_t padding, int64_t pool = 1);

// A whole bottleneck layer: conv2_3x3(relu(norm2(conv1_1x1(relu(norm1(cat(features))))))). Saves
// the features, the 1x1 convolution's output (4k channels) and the batch statistics; both BN +
// ReLU outputs are recomputed in backward (the "shared storage" of Pleiss et al. for both norms).
at::Tensor efficient_bottleneck_layer(at::TensorList features, const NormArgs& norm1, const at::Tensor& conv1_weight,
                                      const NormArgs& norm2, const at::Tensor& conv2_weight);

}  // namespace densetorch
