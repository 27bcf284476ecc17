#include "recipes.h"

#include "draws.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace densetorch {

namespace {

double beta_sample(double alpha, at::Generator& gen) {
  // torch._sample_dirichlet(torch.tensor([alpha, alpha]))[0], as torchvision draws lambda.
  const at::Tensor concentration = at::full({2}, alpha, at::kFloat);
  return at::_sample_dirichlet(concentration, gen)[0].item<double>();
}

}  // namespace

std::pair<at::Tensor, Mix> mix_batch(at::Tensor& x, const at::Tensor& y, int64_t num_classes, const MixOptions& o,
                                     at::Generator& gen) {
  const bool both = o.mixup_alpha > 0 && o.cutmix_alpha > 0;
  const bool cutmix = both ? draw_int(2, gen) == 1 : o.cutmix_alpha > 0;
  double lambda = beta_sample(cutmix ? o.cutmix_alpha : o.mixup_alpha, gen);
  const at::Tensor rolled = x.roll(1, 0);
  if (cutmix) {
    const int64_t h = x.size(2), w = x.size(3);
    const int64_t rx = draw_int(w, gen), ry = draw_int(h, gen);
    const double r = 0.5 * std::sqrt(1.0 - lambda);
    const auto rw = static_cast<int64_t>(r * static_cast<double>(w));
    const auto rh = static_cast<int64_t>(r * static_cast<double>(h));
    const int64_t x1 = std::max<int64_t>(rx - rw, 0), y1 = std::max<int64_t>(ry - rh, 0);
    const int64_t x2 = std::min(rx + rw, w), y2 = std::min(ry + rh, h);
    if (x2 > x1 && y2 > y1) {
      x.narrow(2, y1, y2 - y1).narrow(3, x1, x2 - x1).copy_(rolled.narrow(2, y1, y2 - y1).narrow(3, x1, x2 - x1));
    }
    lambda = 1.0 - static_cast<double>((x2 - x1) * (y2 - y1)) / static_cast<double>(w * h);
  } else {
    x.mul_(lambda).add_(rolled, 1.0 - lambda);
  }
  const at::Tensor onehot = at::one_hot(y, num_classes).to(x.scalar_type());
  at::Tensor target = onehot * lambda + onehot.roll(1, 0) * (1.0 - lambda);
  return {target, Mix{cutmix, lambda}};
}

WeightAverage::WeightAverage(DenseNet& model, double decay) : model_(model), decay_(decay) {
  torch::NoGradGuard no_grad;
  for (const auto& t : model_tensors()) average_.push_back(t.detach().clone());
}

std::vector<at::Tensor> WeightAverage::model_tensors() const {
  std::vector<at::Tensor> out = model_->parameters();
  for (const auto& b : model_->buffers())
    if (b.defined()) out.push_back(b);
  return out;
}

void WeightAverage::update(bool copy) {
  torch::NoGradGuard no_grad;
  const std::vector<at::Tensor> current = model_tensors();
  std::vector<at::Tensor> avg_float, cur_float;
  for (std::size_t i = 0; i < current.size(); ++i) {
    if (copy || updates_ == 0 || !at::isFloatingType(current[i].scalar_type())) {
      average_[i].copy_(current[i]);
    } else {
      avg_float.push_back(average_[i]);
      cur_float.push_back(current[i]);
    }
  }
  // avg + (1 - decay) * (w - avg) = decay * avg + (1 - decay) * w, as torch's get_ema_multi_avg_fn.
  if (!avg_float.empty()) at::_foreach_lerp_(avg_float, cur_float, 1.0 - decay_);
  ++updates_;
}

void WeightAverage::reset() {
  copy_to_average();
  updates_ = 0;
}

void WeightAverage::copy_to_average() {
  torch::NoGradGuard no_grad;
  const std::vector<at::Tensor> current = model_tensors();
  for (std::size_t i = 0; i < current.size(); ++i) average_[i].copy_(current[i]);
}

void WeightAverage::swap() {
  torch::NoGradGuard no_grad;
  const std::vector<at::Tensor> current = model_tensors();
  for (std::size_t i = 0; i < current.size(); ++i) {
    const at::Tensor saved = current[i].clone();
    current[i].copy_(average_[i]);
    average_[i].copy_(saved);
  }
}

void WeightAverage::copy_to_model() {
  torch::NoGradGuard no_grad;
  const std::vector<at::Tensor> current = model_tensors();
  for (std::size_t i = 0; i < current.size(); ++i) current[i].copy_(average_[i]);
}

void WeightAverage::save(torch::serialize::OutputArchive& archive) const {
  torch::serialize::OutputArchive ema;
  for (std::size_t i = 0; i < average_.size(); ++i) ema.write(std::to_string(i), average_[i]);
  ema.write("updates", at::tensor(updates_));
  archive.write("densetorch.ema", ema);
}

bool WeightAverage::load(torch::serialize::InputArchive& archive) {
  torch::serialize::InputArchive ema;
  if (!archive.try_read("densetorch.ema", ema)) return false;
  std::vector<at::Tensor> loaded(average_.size());
  for (std::size_t i = 0; i < average_.size(); ++i) ema.read(std::to_string(i), loaded[i]);
  at::Tensor updates;
  ema.read("updates", updates);
  torch::NoGradGuard no_grad;
  for (std::size_t i = 0; i < average_.size(); ++i) average_[i].copy_(loaded[i]);
  updates_ = updates.item<int64_t>();
  return true;
}

}  // namespace densetorch
