#include "data.h"

#include <ATen/CPUGeneratorImpl.h>

#include <stdexcept>
#include <string>

namespace densetorch {

void validate(const Dataset& d, int64_t num_classes) {
  if (!d.images.defined() || d.images.dim() != 4)
    throw std::invalid_argument("images must have shape [N, C, H, W]");
  if (d.images.scalar_type() != at::kByte && d.images.scalar_type() != at::kFloat)
    throw std::invalid_argument("images must be uint8 or float32");
  if (!d.labels.defined() || d.labels.dim() != 1) throw std::invalid_argument("labels must have shape [N]");
  if (d.labels.size(0) != d.images.size(0))
    throw std::invalid_argument("labels has " + std::to_string(d.labels.size(0)) + " entries but images has " +
                                std::to_string(d.images.size(0)));
  if (d.size() == 0) throw std::out_of_range("the data set is empty");
  const int64_t lo = d.labels.min().item<int64_t>(), hi = d.labels.max().item<int64_t>();
  if (lo < 0 || hi >= num_classes)
    throw std::out_of_range("labels must be in [0, " + std::to_string(num_classes - 1) + "] for a model with " +
                            std::to_string(num_classes) + " classes, got labels from " + std::to_string(lo) + " to " +
                            std::to_string(hi));
  for (const auto* stats : {&d.mean, &d.std})
    if (stats->has_value() && static_cast<int64_t>((*stats)->size()) != d.images.size(1))
      throw std::invalid_argument("normalize mean and std need one value per channel (" + std::to_string(d.images.size(1)) + ")");
}

at::Tensor epoch_order(int64_t n, bool shuffle, at::Generator& gen) {
  if (!shuffle) return at::arange(n, at::kLong);
  return at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
}

namespace {

at::Tensor crop_and_flip(const at::Tensor& x, at::Generator& gen) {
  constexpr int64_t kPad = 4;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  at::Tensor padded = at::constant_pad_nd(x, {kPad, kPad, kPad, kPad}, 0);
  at::Tensor offsets = at::randint(0, 2 * kPad + 1, {n, 2}, gen, at::TensorOptions().dtype(at::kLong));
  at::Tensor flips = at::randint(0, 2, {n}, gen, at::TensorOptions().dtype(at::kLong));
  auto off = offsets.accessor<int64_t, 2>();
  auto flip = flips.accessor<int64_t, 1>();
  at::Tensor out = at::empty_like(x);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor crop = padded[i].narrow(1, off[i][0], h).narrow(2, off[i][1], w);
    out[i].copy_(flip[i] ? crop.flip({2}) : crop);
  }
  return out;
}

}  // namespace

std::pair<at::Tensor, at::Tensor> make_batch(const Dataset& d, const at::Tensor& indices, bool train, at::Generator& gen) {
  at::Tensor x = d.images.index_select(0, indices).to(at::kFloat);
  if (d.images.scalar_type() == at::kByte) x.div_(255.0);
  if (d.mean && d.std) {
    const auto c = static_cast<int64_t>(d.mean->size());
    at::Tensor mean = at::tensor(*d.mean, at::kDouble).to(at::kFloat).view({1, c, 1, 1});
    at::Tensor std = at::tensor(*d.std, at::kDouble).to(at::kFloat).view({1, c, 1, 1});
    x.sub_(mean).div_(std);
  }
  if (train && d.augment == Augment::kCifar) x = crop_and_flip(x, gen);
  return {x, d.labels.index_select(0, indices)};
}

}  // namespace densetorch
