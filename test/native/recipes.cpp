// A C++ test of native/core/recipes: MixUp and CutMix against torchvision's formulas (the draws
// replayed from a copy of the generator), lambda's Beta(alpha, alpha) moments, and the weight
// average's update, swap, save and load. Compiled and run by test/20-native-core.test.js; prints
// "ok" and exits 0, or what went wrong and exits 1.
#include "check.h"
#include "dense_sources.h"
#include "../../native/core/recipes.cpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <cstdio>
#include <sstream>

using namespace densetorch;
using densetorch_test::check;
using densetorch_test::failures;

namespace {

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

at::Tensor onehot(const at::Tensor& y, int64_t k) { return at::one_hot(y, k).to(at::kFloat); }

void mixup() {
  const at::Tensor x0 = at::rand({6, 3, 8, 8});
  const at::Tensor y = at::tensor({0, 1, 2, 3, 4, 0}, at::kLong);
  at::Generator gen = at::detail::createCPUGenerator(7);
  at::Generator replay = gen.clone();
  at::Tensor x = x0.clone();
  const auto [target, mix] = mix_batch(x, y, 5, MixOptions{0.2, 0}, gen);
  const double lambda = at::_sample_dirichlet(at::full({2}, 0.2, at::kFloat), replay)[0].item<double>();
  check(!mix.cutmix && std::abs(mix.lambda - lambda) < 1e-12, "MixUp: lambda is the first component of Dirichlet(alpha, alpha)");
  check(max_diff(x, x0 * lambda + x0.roll(1, 0) * (1 - lambda)) < 1e-6, "MixUp: x = lambda * x + (1 - lambda) * roll(x, 1)");
  check(max_diff(target, onehot(y, 5) * lambda + onehot(y.roll(1, 0), 5) * (1 - lambda)) < 1e-6,
        "MixUp: targets = lambda * onehot(y) + (1 - lambda) * onehot(roll(y, 1))");
  check(std::abs(target.sum(1).mean().item<double>() - 1) < 1e-6, "MixUp: each target sums to 1");
}

void cutmix() {
  const int64_t h = 8, w = 10;
  for (uint64_t seed = 0; seed < 20; ++seed) {
    const at::Tensor x0 = at::rand({4, 2, h, w});
    const at::Tensor y = at::tensor({0, 1, 2, 3}, at::kLong);
    at::Generator gen = at::detail::createCPUGenerator(seed);
    at::Generator replay = gen.clone();
    at::Tensor x = x0.clone();
    const auto [target, mix] = mix_batch(x, y, 4, MixOptions{0, 1.0}, gen);
    // torchvision's RandomCutmix, step by step.
    const double lambda0 = at::_sample_dirichlet(at::full({2}, 1.0, at::kFloat), replay)[0].item<double>();
    const int64_t rx = at::randint(w, {1}, replay, at::TensorOptions().dtype(at::kLong)).item<int64_t>();
    const int64_t ry = at::randint(h, {1}, replay, at::TensorOptions().dtype(at::kLong)).item<int64_t>();
    const double r = 0.5 * std::sqrt(1.0 - lambda0);
    const auto rw = static_cast<int64_t>(r * w), rh = static_cast<int64_t>(r * h);
    const int64_t x1 = std::max<int64_t>(rx - rw, 0), y1 = std::max<int64_t>(ry - rh, 0);
    const int64_t x2 = std::min<int64_t>(rx + rw, w), y2 = std::min<int64_t>(ry + rh, h);
    at::Tensor want = x0.clone();
    const at::Tensor rolled = x0.roll(1, 0);
    for (int64_t i = y1; i < y2; ++i)
      for (int64_t j = x1; j < x2; ++j) want.select(2, i).select(2, j).copy_(rolled.select(2, i).select(2, j));
    const double lambda = 1.0 - static_cast<double>((x2 - x1) * (y2 - y1)) / static_cast<double>(w * h);
    check(mix.cutmix, "CutMix alone: every batch is cut");
    check(max_diff(x, want) == 0, "CutMix: the box [y1, y2) x [x1, x2) comes from roll(x, 1), the rest is untouched");
    check(std::abs(mix.lambda - lambda) < 1e-12, "CutMix: lambda = 1 - box area / image area");
    check(max_diff(target, onehot(y, 4) * lambda + onehot(y.roll(1, 0), 4) * (1 - lambda)) < 1e-6, "CutMix: targets mix by the box's share");
  }
}

void both_and_moments() {
  at::Generator gen = at::detail::createCPUGenerator(3);
  const double alpha = 0.4;
  const int n = 4000;
  int cut = 0;
  double sum = 0, sq = 0;
  for (int i = 0; i < n; ++i) {
    at::Tensor x = at::zeros({2, 1, 4, 4});
    const auto [target, mix] = mix_batch(x, at::tensor({0, 1}, at::kLong), 2, MixOptions{alpha, alpha}, gen);
    if (mix.cutmix) {
      ++cut;
    } else {
      sum += mix.lambda;
      sq += mix.lambda * mix.lambda;
    }
  }
  const double share = static_cast<double>(cut) / n;
  std::printf("both set: CutMix in %.3f of %d batches; MixUp's lambda: mean %.4f (Beta: 0.5), variance %.4f (Beta: %.4f)\n", share, n,
              sum / (n - cut), sq / (n - cut) - (sum / (n - cut)) * (sum / (n - cut)), 1.0 / (4 * (2 * alpha + 1)));
  check(std::abs(share - 0.5) < 0.04, "both set: one of the two per batch, each about half the time");
  const double mean = sum / (n - cut), var = sq / (n - cut) - mean * mean;
  check(std::abs(mean - 0.5) < 0.03, "lambda's mean is Beta(alpha, alpha)'s, 1/2");
  check(std::abs(var - 1.0 / (4 * (2 * alpha + 1))) < 0.015, "lambda's variance is Beta(alpha, alpha)'s, 1 / (4 (2 alpha + 1))");
}

void weight_average() {
  // A DenseNet for the class's type; its tensors are what the average follows.
  DenseNetConfig config;
  config.growth_rate = 4;
  config.block_config = {1};
  config.num_init_features = 4;
  config.num_classes = 3;
  config.stem = Stem::kCifar;
  DenseNet model(config);
  std::vector<at::Tensor> tensors = model->parameters();
  for (const auto& b : model->buffers())
    if (b.defined()) tensors.push_back(b);
  const double decay = 0.75;
  WeightAverage ema(model, decay);
  std::vector<at::Tensor> want;
  auto perturb = [&](int step) {
    torch::NoGradGuard no_grad;
    for (auto& t : tensors) {
      if (at::isFloatingType(t.scalar_type())) t.add_(at::randn_like(t));
      else t.add_(step);
    }
  };
  for (int step = 0; step < 4; ++step) {
    perturb(step + 1);
    ema.update();
    if (step == 0) {
      for (const auto& t : tensors) want.push_back(t.clone());
    } else {
      for (std::size_t i = 0; i < tensors.size(); ++i)
        want[i] = at::isFloatingType(tensors[i].scalar_type()) ? want[i] * decay + tensors[i] * (1 - decay) : tensors[i].clone();
    }
  }
  const std::vector<at::Tensor> raw = [&] {
    std::vector<at::Tensor> out;
    for (const auto& t : tensors) out.push_back(t.clone());
    return out;
  }();
  ema.swap();
  double worst = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) worst = std::max(worst, max_diff(tensors[i].to(at::kDouble), want[i].to(at::kDouble)));
  std::printf("weight average after 4 updates (decay %.2f): largest difference from the formula %.3g\n", decay, worst);
  check(worst < 1e-5, "the first update copies, then avg = decay * avg + (1 - decay) * w; integer buffers are copied");
  ema.swap();
  double back = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) back = std::max(back, max_diff(tensors[i].to(at::kDouble), raw[i].to(at::kDouble)));
  check(back == 0, "a second swap gives the raw weights back exactly");

  torch::serialize::OutputArchive out;
  ema.save(out);
  std::ostringstream bytes;
  out.save_to(bytes);
  WeightAverage restored(model, decay);
  torch::serialize::InputArchive in;
  std::istringstream read(bytes.str());
  in.load_from(read);
  check(restored.load(in) && restored.updates() == 4, "load reads the average and its update count");
  restored.copy_to_model();
  double loaded = 0;
  for (std::size_t i = 0; i < tensors.size(); ++i) loaded = std::max(loaded, max_diff(tensors[i].to(at::kDouble), want[i].to(at::kDouble)));
  check(loaded < 1e-5, "the loaded average equals the saved one");
  torch::serialize::InputArchive empty;
  check(!restored.load(empty), "an archive without an average: load says so");
}

}  // namespace

int main() {
  torch::manual_seed(0);
  mixup();
  cutmix();
  both_and_moments();
  weight_average();
  if (failures) return 1;
  std::printf("ok\n");
  return 0;
}
