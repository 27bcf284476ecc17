// A C++ test of native/core (no N-API): float16 training's dynamic loss scaling (LossScaler in
// precision.h), run on the CPU with float32 gradients. Scaled backward then unscale gives the
// plain gradients; a step whose gradients overflow is refused and the scale halved; clean steps
// double it after the growth interval. Compiled and run by test/20-native-core.test.js; prints
// "ok" and exits 0, or what went wrong and exits 1.
#include "check.h"
#include "../../native/core/precision.h"

#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <limits>

using namespace densetorch;
using densetorch_test::check;
using densetorch_test::failures;

int main() {
  torch::manual_seed(0);
  auto w = torch::randn({8, 4}, torch::requires_grad());
  auto x = torch::randn({16, 8});
  auto loss_of = [&] { return torch::matmul(x, w).square().mean(); };

  loss_of().backward();
  const at::Tensor plain = w.grad().clone();
  w.mutable_grad() = at::Tensor();

  LossScaler scaler(at::kCPU, /*init_scale=*/1024.0, /*growth_interval=*/2);
  check(scaler.value() == 1024.0, "starts at the initial scale");
  scaler.scale(loss_of()).backward();
  check(w.grad().abs().max().item<double>() > 100 * plain.abs().max().item<double>(), "backward of the scaled loss gives scaled gradients");
  check(scaler.unscale({w}), "finite gradients: the step may go ahead");
  const double diff = (w.grad() - plain).abs().max().item<double>();
  std::printf("largest difference between unscaled and plain gradients: %.3g\n", diff);
  check(diff <= 1e-6 * plain.abs().max().item<double>(), "unscaled gradients equal the plain ones");
  scaler.update();
  check(scaler.value() == 1024.0, "one clean step: the scale stays");
  scaler.update();
  check(scaler.value() == 2048.0, "growth_interval clean steps: the scale doubles");

  w.mutable_grad()[0][0] = std::numeric_limits<float>::infinity();
  check(!scaler.unscale({w}), "an infinite gradient: the step is refused");
  scaler.update();
  check(scaler.value() == 1024.0, "after an overflow the scale halves");
  w.mutable_grad()[0][0] = std::nanf("");
  check(!scaler.unscale({w}), "a NaN gradient: the step is refused");
  scaler.update();
  check(scaler.value() == 512.0, "after another overflow it halves again");
  w.mutable_grad().zero_();
  check(scaler.unscale({w}), "clean gradients again: the step may go ahead");
  scaler.update();
  check(scaler.value() == 512.0, "the clean-step count restarted after the overflow");

  auto frozen = torch::zeros({2}, torch::requires_grad());  // no gradient at all
  check(scaler.unscale({frozen}), "parameters without gradients are skipped");

  if (failures) return 1;
  std::printf("ok\n");
  return 0;
}
