// norm_gemm (the 1x1 convolution with batch norm + ReLU as its prologue) against LibTorch:
// relu(x * scale + shift) times the weight in double precision, with and without bias and output ReLU, for every
// panel width (1-4 vectors), row counts no micro-kernel height divides, k below and above a
// vector, rows strided wider than k (a channel range of a block buffer), NaN propagation; without
// normalisation (a plain product); the 3x3 convolution through the product (conv3x3_rows).
// Prints the variant it ran ("avx512", "avx2", "default": DENSETORCH_CPU_CAPABILITY picks) and "ok".
#include "kernel_sources.h"

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
  const int64_t rows = x.size(0), k = x.size(1), n = w.size(0);
  std::vector<float> packed(static_cast<std::size_t>(n * k));
  norm_gemm::pack_weight(w.data_ptr<float>(), n, k, packed.data());
  at::Tensor out = at::full({rows, n}, -7.f);
  const norm_gemm::Args a{x.data_ptr<float>(), x.stride(0), k, scale.defined() ? scale.data_ptr<float>() : nullptr,
                          shift.defined() ? shift.data_ptr<float>() : nullptr,
                          packed.data(), n, bias.defined() ? bias.data_ptr<float>() : nullptr, relu,
                          out.data_ptr<float>(), n};
  at::parallel_for(0, rows, 8, [&](int64_t b, int64_t e) { norm_gemm::rows(a, b, e); });
  return out;
}

at::Tensor reference(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& w,
                     const at::Tensor& bias, bool relu) {
  const at::Tensor normed = scale.defined() ? (x * scale + shift).relu() : x;  // undefined: no normalisation
  at::Tensor y = at::mm(normed.to(at::kDouble), w.t().to(at::kDouble)).to(at::kFloat);  // the 1x1 convolution
  if (bias.defined()) y = y + bias;
  return relu ? y.relu() : y;
}

// The 3x3 convolution through the product (conv3x3_rows) against at::conv2d in double
// precision: images of one row or column (every window reaches the zero border), DenseNet-121's
// late-block shapes at batch 1 (128 -> 32 at 7x7 and 14x14), channel counts below a vector and not
// whole vectors, several images, input and output rows strided wider than their channels (channel
// ranges of block buffers), the pixels split between two callers at a point inside a tile.
void check_conv3x3_gemm() {
  struct Shape {
    int64_t N, c, n, H, W;
  };
  double worst = 0;
  for (const Shape s : {Shape{1, 128, 32, 7, 7}, Shape{1, 128, 32, 14, 14}, Shape{2, 24, 16, 5, 7},
                        Shape{3, 5, 48, 1, 3}, Shape{1, 1, 16, 2, 1}, Shape{2, 37, 64, 9, 4}}) {
    const at::Tensor x = torch::randn({s.N, s.c + 5, s.H, s.W}).contiguous(at::MemoryFormat::ChannelsLast).narrow(1, 0, s.c);
    const at::Tensor w = torch::randn({s.n, s.c, 3, 3}) / std::sqrt(9.0 * static_cast<double>(s.c));
    const at::Tensor rows = w.permute({0, 2, 3, 1}).reshape({s.n, 9 * s.c}).contiguous();
    std::vector<float> packed(static_cast<std::size_t>(s.n * 9 * s.c));
    norm_gemm::pack_weight(rows.data_ptr<float>(), s.n, 9 * s.c, packed.data());
    at::Tensor out_buffer = torch::full({s.N, s.n + 3, s.H, s.W}, -7.f).contiguous(at::MemoryFormat::ChannelsLast);
    const norm_gemm::Conv3x3Args a{x.data_ptr<float>(), s.c + 5, s.c, s.H, s.W, packed.data(), s.n,
                                   out_buffer.data_ptr<float>(), s.n + 3};
    const int64_t pixels = s.N * s.H * s.W, split = pixels * 3 / 5;
    at::parallel_for(0, 2, 1, [&](int64_t first, int64_t last) {
      for (int64_t part = first; part < last; ++part)
        norm_gemm::conv3x3_rows(a, part == 0 ? 0 : split, part == 0 ? split : pixels);
    });
    const at::Tensor want = at::conv2d(x.to(at::kDouble), w.to(at::kDouble), {}, 1, 1);
    const double diff =
        (out_buffer.narrow(1, 0, s.n).to(at::kDouble) - want).abs().max().item<double>() / want.abs().max().item<double>();
    worst = std::max(worst, diff);
    if (!(diff < 1e-5)) {
      std::printf("conv3x3_rows N=%ld c=%ld n=%ld %ldx%ld: relative difference %g\n", static_cast<long>(s.N),
                  static_cast<long>(s.c), static_cast<long>(s.n), static_cast<long>(s.H), static_cast<long>(s.W), diff);
      check(false, "the 3x3 convolution through the product equals conv2d");
    }
    check((out_buffer.narrow(1, s.n, 3) == -7.f).all().item<bool>(), "channels past n of the output rows are left alone");
  }
  std::printf("conv3x3_rows (%s): largest relative difference from conv2d in double precision: %.2e\n",
              norm_gemm::kernel_name(), worst);
}

// The Winograd 3x3 convolution against at::conv2d in double precision: images of one pixel
// (every tap reads the zero border) to odd sizes no 2x2 tile divides, channel counts of one to
// several vectors and panels and counts that are not whole vectors (BC-100's 48 -> 12 and its
// transpose, 5 and 3, 20 -> 9), with and without batch norm + ReLU in the input transform, input
// and output rows strided wider than their channels (channel ranges of block buffers), tiles
// split between two callers at a point inside a block. The variant this process runs (the
// portable one under DENSETORCH_CPU_CAPABILITY=default).
void check_winograd() {
  check(winograd::available(8, 8) && winograd::available(128, 32) &&
            winograd::available(48, 12) && winograd::available(5, 3),
        "any channel counts run");
  check(!winograd::available(0, 8) && !winograd::available(8, 0), "no channels do not");
  check(winograd::size(48, 12) == 16 * 48 * 16 && winograd::size(5, 3) == 16 * 8 * 8,
        "products run on whole vectors");
  struct Shape {
    int64_t N, c, k, H, W;
  };
  double worst = 0;
  int checked = 0;
  for (const Shape s : {Shape{2, 8, 8, 1, 1}, Shape{3, 16, 8, 2, 3}, Shape{2, 24, 16, 5, 7}, Shape{2, 128, 32, 9, 9},
                        Shape{1, 32, 128, 8, 6}, Shape{2, 48, 24, 14, 13}, Shape{1, 8, 40, 17, 4},
                        Shape{2, 48, 12, 9, 9}, Shape{2, 12, 48, 8, 7}, Shape{3, 5, 3, 5, 7}, Shape{1, 20, 9, 6, 6},
                        Shape{1, 1, 1, 3, 3}})
    for (bool norm : {false, true}) {
      const at::Tensor x_buffer =
          torch::randn({s.N, s.c + 5, s.H, s.W}).contiguous(at::MemoryFormat::ChannelsLast);
      const at::Tensor x = x_buffer.narrow(1, 0, s.c);
      const at::Tensor w = torch::randn({s.k, s.c, 3, 3}) / std::sqrt(9.0 * static_cast<double>(s.c));
      const at::Tensor scale = torch::rand({s.c}) + 0.5, shift = torch::randn({s.c}) * 0.5;
      at::Tensor out_buffer = torch::full({s.N, s.k + 3, s.H, s.W}, -7.f).contiguous(at::MemoryFormat::ChannelsLast);
      std::vector<float> packed(static_cast<std::size_t>(winograd::size(s.c, s.k)));
      winograd::pack_weight(w.data_ptr<float>(), s.k, s.c, packed.data());
      // Rows c + 5 and k + 3 floats apart (stride(3) of a 1x1 image says nothing).
      const winograd::Args a{{x.data_ptr<float>(), s.c + 5, s.N, s.H, s.W, s.c,
                                       norm ? scale.data_ptr<float>() : nullptr, norm ? shift.data_ptr<float>() : nullptr},
                                      packed.data(), s.k, out_buffer.data_ptr<float>(), s.k + 3};
      const int64_t tiles = winograd::tile_count(s.N, s.H, s.W);
      check(tiles == s.N * ((s.H + 1) / 2) * ((s.W + 1) / 2), "tiles cover every output pixel");
      const int64_t split = tiles * 3 / 5;
      at::parallel_for(0, 2, 1, [&](int64_t first, int64_t last) {
        for (int64_t part = first; part < last; ++part)
          winograd::tiles(a, part == 0 ? 0 : split, part == 0 ? split : tiles);
      });
      at::Tensor input = x.to(at::kDouble);
      if (norm) input = (input * scale.view({1, -1, 1, 1}) + shift.view({1, -1, 1, 1})).relu();
      const at::Tensor want = at::conv2d(input, w.to(at::kDouble), {}, 1, 1);
      const double diff =
          (out_buffer.narrow(1, 0, s.k).to(at::kDouble) - want).abs().max().item<double>() / want.abs().max().item<double>();
      worst = std::max(worst, diff);
      ++checked;
      if (!(diff < 1e-5)) {
        std::printf("winograd N=%ld c=%ld k=%ld %ldx%ld norm=%d: relative difference %g\n", static_cast<long>(s.N),
                    static_cast<long>(s.c), static_cast<long>(s.k), static_cast<long>(s.H), static_cast<long>(s.W),
                    norm, diff);
        check(false, "the Winograd convolution equals conv2d");
      }
      check((out_buffer.narrow(1, s.k, 3) == -7.f).all().item<bool>(), "channels past k of the output rows are left alone");
    }
  std::printf("winograd (%s): %d shapes, largest relative difference from conv2d in double precision: %.2e\n", winograd::kernel_name(),
              checked, worst);
}

}  // namespace

int main() {
  at::set_num_threads(2);
  torch::manual_seed(0);
  std::printf("kernel %s (capability %s, CPU %s)\n", norm_gemm::kernel_name(), kernels::name(kernels::capability()),
              kernels::name(kernels::cpu_supports()));
  check(std::string(norm_gemm::kernel_name()) == kernels::name(kernels::capability()),
        "the variant picked is the capability's (every capability has a norm_gemm variant)");
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
  // Without scale and shift: the plain product x @ w^T (negative inputs pass unchanged).
  double worst_plain = 0;
  for (int64_t n : {16, 48, 128})
    for (int64_t k : {7, 130})
      for (int64_t rows : {5, 133}) {
        const at::Tensor x = torch::randn({rows, k + 9}).narrow(1, 0, k);
        const at::Tensor w = torch::randn({n, k}) / std::sqrt(static_cast<double>(k));
        const double diff = (run(x, {}, {}, w, {}, false) - reference(x, {}, {}, w, {}, false)).abs().max().item<double>();
        worst_plain = std::max(worst_plain, diff);
        check(diff < 1e-4, "without scale and shift, norm_gemm equals x @ w^T");
      }
  std::printf("without normalisation: largest difference from the double-precision product: %.2e\n", worst_plain);
  check_conv3x3_gemm();
  check_winograd();
  if (densetorch_test::failures == 0) std::printf("ok\n");
  return densetorch_test::failures == 0 ? 0 : 1;
}
