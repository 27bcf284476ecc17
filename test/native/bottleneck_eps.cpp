// A C++ test of native/core (no N-API): the memory-efficient bottleneck layer uses each batch
// norm's own eps. Two layers with the same weights, one memory-efficient and one naive, norm1's
// eps 1e-5 and norm2's 0.5: outputs and gradients must agree. Compiled and run by
// test/20-native-core.test.js; prints "ok" and exits 0, or the differences and exits 1.
#include "dense_sources.h"

#include <cstdio>

using namespace densetorch;

int main() {
  torch::manual_seed(0);
  const int64_t in = 16, k = 4, bn = 2;
  DenseLayer efficient(in, k, bn, 0.0, /*memory_efficient=*/true);
  DenseLayer naive(in, k, bn, 0.0, /*memory_efficient=*/false);
  {
    torch::NoGradGuard no_grad;
    auto src = efficient->named_parameters();
    for (auto& p : naive->named_parameters()) p.value().copy_(src[p.key()]);
  }
  for (auto* layer : {&efficient, &naive}) {
    for (auto& child : (*layer)->named_children()) {
      auto* norm = child.value()->as<torch::nn::BatchNorm2d>();
      if (norm) norm->options.eps(child.key() == "norm2" ? 0.5 : 1e-5);
    }
  }
  efficient->train();
  naive->train();
  auto a = torch::randn({4, 8, 6, 6}, torch::requires_grad());
  auto b = torch::randn({4, 8, 6, 6}, torch::requires_grad());
  auto out_e = efficient->forward({a, b});
  auto grads_e = torch::autograd::grad({out_e.square().sum()}, {a, b, efficient->named_parameters()["norm2.weight"]});
  auto out_n = naive->forward({a, b});
  auto grads_n = torch::autograd::grad({out_n.square().sum()}, {a, b, naive->named_parameters()["norm2.weight"]});
  double worst = (out_e - out_n).abs().max().item<double>();
  for (size_t i = 0; i < grads_e.size(); ++i) worst = std::max(worst, (grads_e[i] - grads_n[i]).abs().max().item<double>());
  std::printf("largest difference between memory-efficient and naive (outputs, input and norm2 gradients): %.3g\n", worst);
  if (worst > 1e-4) {
    std::printf("FAIL: the memory-efficient layer does not use norm2's eps\n");
    return 1;
  }
  std::printf("ok\n");
  return 0;
}
