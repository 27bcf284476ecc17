// Pieces of modern training recipes that act on a batch or on the weights around the optimizer:
// MixUp and CutMix (torchvision's RandomMixup / RandomCutmix) and the exponential moving average
// of the weights (torchvision's ExponentialMovingAverage, an AveragedModel over parameters and
// buffers). The training loop (trainer.cpp) decides when each runs.
#pragma once

#include "densenet.h"

#include <torch/torch.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace densetorch {

struct MixOptions {
  double mixup_alpha = 0;   // > 0: MixUp with lambda ~ Beta(alpha, alpha)
  double cutmix_alpha = 0;  // > 0: CutMix with lambda ~ Beta(alpha, alpha)
  bool any() const { return mixup_alpha > 0 || cutmix_alpha > 0; }
};

// What mix_batch did to a batch.
struct Mix {
  bool cutmix;    // false: MixUp
  double lambda;  // weight of each image's own label in its target
};

// Mixes batch `x` [B, C, H, W] in place with itself rolled by one along the batch (image i with
// image i - 1), as torchvision's references: when both alphas are set one of the two is chosen
// per batch (uniformly); lambda ~ Beta(alpha, alpha). CutMix pastes a box of relative area about
// 1 - lambda centred at a uniform pixel (clipped at the borders) and then sets lambda to the
// box's exact complement share. Returns the soft targets lambda * onehot(y) + (1 - lambda) *
// onehot(roll(y, 1)) [B, num_classes] and what was done. Draws come from `gen` only.
std::pair<at::Tensor, Mix> mix_batch(at::Tensor& x, const at::Tensor& y, int64_t num_classes, const MixOptions& options,
                                     at::Generator& gen);

// An exponential moving average of a model's parameters and buffers: avg = decay * avg + (1 -
// decay) * w for floating-point tensors (integer buffers are copied), the first update copying.
class WeightAverage {
 public:
  WeightAverage(DenseNet& model, double decay);
  // One update from the model's current weights; `copy` makes the average equal them (torchvision
  // restarts the average this way during the learning-rate warm-up).
  void update(bool copy = false);
  // Restarts the average at the model's current weights, as if no update had happened.
  void reset();
  // Exchanges the model's weights with the average (call again to exchange them back).
  void swap();
  // Writes the average into the model.
  void copy_to_model();
  int64_t updates() const { return updates_; }
  // The average's tensors (parameters, then buffers), e.g. to make every rank hold rank 0's.
  std::vector<at::Tensor>& tensors() { return average_; }
  void save(torch::serialize::OutputArchive& archive) const;
  // Reads what save wrote; false (and nothing changed) when the archive has no average.
  bool load(torch::serialize::InputArchive& archive);

 private:
  std::vector<at::Tensor> model_tensors() const;
  void copy_to_average();
  DenseNet model_;
  double decay_;
  std::vector<at::Tensor> average_;  // parameters, then defined buffers, in the model's order
  int64_t updates_ = 0;
};

}  // namespace densetorch
