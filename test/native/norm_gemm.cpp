// norm_gemm (the 1x1 convolution with batch norm + ReLU as its prologue) against LibTorch:
// relu(x * scale + shift) times the weight in double precision, with and without bias and output ReLU, for every
// panel width (1-4 vectors), row counts no micro-kernel height divides, k below and above a
// vector, rows strided wider than k (a channel range of a block buffer), NaN propagation.
// Prints the kernel it ran ("avx512" / "avx2": DENSETORCH_NORM_GEMM picks) and "ok".
#include "../../native/core/norm_gemm.cpp"

#include <ATen/Parallel.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "check.h"

using densetorch_test::check;
using namespace densetorch;

namespace {

at::Tensor run(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& w,
               const at::Tensor& bias, bool relu) {
  const int64_t rows = x.size(0), k = scale.size(0), n = w.size(0);
  std::vector<float> packed(static_cast<std::size_t>(n * k));
  norm_gemm::pack_weight(w.data_ptr<float>(), n, k, packed.data());
  at::Tensor out = at::full({rows, n}, -7.f);
  const norm_gemm::Args a{x.data_ptr<float>(), x.stride(0), k, scale.data_ptr<float>(), shift.data_ptr<float>(),
                          packed.data(), n, bias.defined() ? bias.data_ptr<float>() : nullptr, relu,
                          out.data_ptr<float>(), n};
  at::parallel_for(0, rows, 8, [&](int64_t b, int64_t e) { norm_gemm::rows(a, b, e); });
  return out;
}

at::Tensor reference(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& w,
                     const at::Tensor& bias, bool relu) {
  const at::Tensor normed = (x * scale + shift).relu();
  at::Tensor y = at::mm(normed.to(at::kDouble), w.t().to(at::kDouble)).to(at::kFloat);  // the 1x1 convolution
  if (bias.defined()) y = y + bias;
  return relu ? y.relu() : y;
}

}  // namespace

int main() {
  at::set_num_threads(2);
  torch::manual_seed(0);
  std::printf("kernel %s\n", norm_gemm::kernel_name());
  check(std::string(norm_gemm::kernel_name()) != "none", "this x86-64 CPU has an AVX2 or AVX-512 kernel");
  check(!norm_gemm::available(24) && !norm_gemm::available(0), "only multiples of 16 output channels");
  double worst = 0;
  for (int64_t n : {16, 32, 48, 64, 80, 128, 192})
    for (int64_t k : {1, 7, 16, 37, 130})
      for (int64_t rows : {1, 5, 47, 48, 133}) {
        check(norm_gemm::available(n), "multiples of 16 output channels are available");
        const at::Tensor buffer = torch::randn({rows, k + 9});  // rows strided wider than k
        const at::Tensor x = buffer.narrow(1, 0, k);
        const at::Tensor scale = torch::rand({k}) + 0.5, shift = torch::randn({k}) * 0.5;
        const at::Tensor w = torch::randn({n, k}) / std::sqrt(static_cast<double>(k));
        const at::Tensor bias = torch::randn({n});
        for (bool with_bias : {false, true})
          for (bool relu : {false, true}) {
            const at::Tensor b = with_bias ? bias : at::Tensor();
            const at::Tensor got = run(x, scale, shift, w, b, relu), want = reference(x, scale, shift, w, b, relu);
            const double diff = (got - want).abs().max().item<double>();
            worst = std::max(worst, diff);
            if (!(diff < 1e-4)) {
              std::printf("n=%ld k=%ld rows=%ld bias=%d relu=%d: max difference %g\n", static_cast<long>(n),
                          static_cast<long>(k), static_cast<long>(rows), with_bias, relu, diff);
              check(false, "norm_gemm equals relu(x * scale + shift) @ w^T");
            }
          }
      }
  // A NaN input poisons its row's outputs (torch.relu keeps NaN), not a neighbour's.
  at::Tensor x = torch::randn({20, 40});
  x[3][5] = std::nanf("");
  const at::Tensor scale = torch::ones({40}), shift = torch::zeros({40}), w = torch::ones({32, 40});
  const at::Tensor out = run(x, scale, shift, w, at::Tensor(), true);
  check(out[3].isnan().all().item<bool>(), "a NaN input gives NaN outputs in its row");
  check(!out.narrow(0, 4, 16).isnan().any().item<bool>() && !out.narrow(0, 0, 3).isnan().any().item<bool>(),
        "other rows stay finite");
  std::printf("largest difference from the double-precision product: %.2e\n", worst);
  if (densetorch_test::failures == 0) std::printf("ok\n");
  return densetorch_test::failures == 0 ? 0 : 1;
}
