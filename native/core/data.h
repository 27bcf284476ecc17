// In-memory image data sets: batching, shuffling, normalisation and the paper's CIFAR
// augmentation, all in C++ on the training thread (no per-batch copies through JS).
#pragma once

#include <torch/torch.h>

#include <optional>
#include <vector>

namespace densetorch {

enum class Augment { kNone, kCifar };

struct Dataset {
  at::Tensor images;  // [N, C, H, W], uint8 (scaled by 1/255) or float32, CPU
  at::Tensor labels;  // [N], int64, CPU
  std::optional<std::vector<double>> mean, std;  // per-channel normalisation, after scaling
  Augment augment = Augment::kNone;

  int64_t size() const { return images.size(0); }
};

// Checks shapes, dtypes and label range; throws std::invalid_argument / std::out_of_range.
void validate(const Dataset& data, int64_t num_classes);

// The order of one epoch: a permutation from `gen` when shuffling, else 0..N-1.
at::Tensor epoch_order(int64_t n, bool shuffle, at::Generator& gen);

// Float32 images and int64 labels of the samples at `indices`, normalised and (if `train` and
// the data set asks for it) augmented with `gen`: random crop with 4-pixel zero padding plus
// random horizontal flip.
std::pair<at::Tensor, at::Tensor> make_batch(const Dataset& data, const at::Tensor& indices, bool train,
                                             at::Generator& gen);

}  // namespace densetorch
