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
  // Backward: the weight's gradient, the input's (accumulated onto what grad_x held) and the two
  // per-channel sums, against the same formulas in double precision; rows split over 2 callers.
  double worst_backward = 0;
  for (int64_t n : {16, 48, 128})
    for (int64_t k : {5, 16, 20, 37, 130, 200})  // panels of 3 vectors, then 2 or 1
      for (int64_t rows : {3, 47, 133}) {
        const at::Tensor buffer = torch::randn({rows, k + 9});
        const at::Tensor x = buffer.narrow(1, 0, k);
        const at::Tensor scale = torch::rand({k}) + 0.5, shift = torch::randn({k}) * 0.5, mean = torch::randn({k});
        const at::Tensor w = torch::randn({n, k}) / std::sqrt(static_cast<double>(k));
        const at::Tensor grad = torch::randn({rows, n});
        const at::Tensor gx_buffer = torch::randn({rows, k + 3});
        const at::Tensor gx0 = gx_buffer.narrow(1, 0, k).clone(), past_k = gx_buffer.narrow(1, k, 3).clone();
        const int64_t kp = norm_gemm::padded_k(k);
        std::vector<float> packed(static_cast<std::size_t>(n * kp));
        norm_gemm::pack_backward_weight(w.data_ptr<float>(), n, k, packed.data());
        at::Tensor gw = torch::zeros({2, n, kp});
        std::vector<double> sums(static_cast<std::size_t>(4 * k), 0.0);
        at::parallel_for(0, 2, 1, [&](int64_t first, int64_t last) {
          for (int64_t part = first; part < last; ++part) {
            const norm_gemm::BackwardArgs a{x.data_ptr<float>(), x.stride(0), k, scale.data_ptr<float>(),
                                            shift.data_ptr<float>(), mean.data_ptr<float>(), grad.data_ptr<float>(), n,
                                            n, packed.data(), gx_buffer.data_ptr<float>(), gx_buffer.stride(0),
                                            gw[part].data_ptr<float>(), sums.data() + part * 2 * k,
                                            sums.data() + part * 2 * k + k};
            norm_gemm::backward_rows(a, rows * part / 2, rows * (part + 1) / 2);
          }
        });
        const at::Tensor xd = x.to(at::kDouble), sd = scale.to(at::kDouble), td = shift.to(at::kDouble);
        const at::Tensor pre = xd * sd + td;
        const at::Tensor gy = at::mm(grad.to(at::kDouble), w.to(at::kDouble)) * (pre > 0);
        const at::Tensor want_gw = at::mm(grad.to(at::kDouble).t(), pre.relu());
        const at::Tensor want_gx = gx0.to(at::kDouble) + sd * gy;
        const at::Tensor want_s1 = gy.sum(0), want_s2 = (gy * (xd - mean.to(at::kDouble))).sum(0);
        at::Tensor s1 = torch::zeros({k}, at::kDouble), s2 = torch::zeros({k}, at::kDouble);
        for (int part = 0; part < 2; ++part)
          for (int64_t i = 0; i < k; ++i) {
            s1[i] += sums[part * 2 * k + i];
            s2[i] += sums[part * 2 * k + k + i];
          }
        const double diff = std::max({(gw.sum(0).narrow(1, 0, k).to(at::kDouble) - want_gw).abs().max().item<double>(),
                                      (gx_buffer.narrow(1, 0, k).to(at::kDouble) - want_gx).abs().max().item<double>(),
                                      (s1 - want_s1).abs().max().item<double>(), (s2 - want_s2).abs().max().item<double>()});
        worst_backward = std::max(worst_backward, diff);
        if (!(diff < 1e-3)) {
          std::printf("backward n=%ld k=%ld rows=%ld: max difference %g\n", static_cast<long>(n), static_cast<long>(k),
                      static_cast<long>(rows), diff);
          check(false, "norm_gemm's backward equals the double-precision formulas");
        }
        check(gx_buffer.narrow(1, k, 3).equal(past_k), "columns of grad_x past k are left alone");
      }
  std::printf("backward: largest difference from the double-precision formulas: %.2e\n", worst_backward);
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
