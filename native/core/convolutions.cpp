// Which implementation computes each convolution of the fused dense block, and the calls into
// them (convolutions.h).
#include "convolutions.h"

#include "derived_cache.h"

#include "env_switches.h"
#include "kernels/conv3x3_weight_grad.h"
#include "kernels/cpu_capability.h"
#include "kernels/norm_gemm.h"
#include "kernels/norm_passes.h"
#include "kernels/winograd.h"

#include <ATen/Parallel.h>
#include <ATen/core/grad_mode.h>
#include <ATen/autocast_mode.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

namespace densetorch::convolutions {

using kernels::Panel;
using kernels::panel_of;

namespace {

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;

// Whether densetorch's own 3x3 kernels (Winograd's forward, input and weight gradients; the nine
// taps' weight gradient) run instead of LibTorch's (oneDNN). Their only ISA variant is AVX2's.
// On AVX2 CPUs they won every measured shape (comments at winograd_runs and conv_backward). On
// AVX-512 CPUs they compete with oneDNN's AVX-512 convolutions, and lost in whole models (2 Intel
// Xeon cores, bench/kernel-isa.js --op 3x3, own / LibTorch img/s: BC-100 training 0.87, DenseNet-121
// training 0.95, inference 0.87 and 0.94, DenseNet-121 batch 1 0.69; docs/performance.md).
// DENSETORCH_WINOGRAD=1 runs them wherever an ISA variant exists, =0 never (measurements);
// unset or auto: this rule.
constexpr bool kOwnConv3x3OnAvx512 = false;

}  // namespace

bool own_conv3x3() {
  static const bool on = env_flag_or_auto("DENSETORCH_WINOGRAD")
                             .value_or(kernels::capability() == kernels::Capability::kAvx2 || kOwnConv3x3OnAvx512);
  return on;
}

NormAffine affine(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& var,
                  double eps) {
  at::Tensor invstd = (var + eps).rsqrt();
  at::Tensor scale = (weight * invstd).contiguous();
  return {scale, (bias - mean * scale).contiguous(), invstd};
}

NormAffine running_affine(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& running_mean,
                          const at::Tensor& running_var, double eps) {
  // With gradients autograd must see the operations (a parameter's gradient through them).
  if (at::GradMode::is_enabled()) return affine(weight, bias, running_mean, running_var, eps);
  static auto* cache = new DerivedCache<NormAffine, 4>();  // never destroyed: used until the process ends
  return cache->get({&running_var, &running_mean, &weight, &bias}, eps,
                    [&] { return affine(weight, bias, running_mean, running_var, eps); });
}

// conv1x1(relu(x * scale + shift), weight) (+ bias, then ReLU when `relu`) in one pass over the
// panel x (norm_gemm.h): the normalised input is formed tile by tile in the cache, never written.
// A new channels-last tensor; undefined when this CPU or shape has no kernel, or when the block
// computes in bfloat16 (the caller then normalises into storage and convolves). Under bfloat16
// autocast every convolution runs in bfloat16 through LibTorch: faster there than this float32
// kernel (BC-100 training 0.61 vs 0.64 s/step, DenseNet-121 0.91 vs 0.96 s, inference too).
bool norm_gemm_runs(at::ScalarType compute, const at::Tensor& weight) {
  return compute == at::kFloat && norm_gemm::accelerated() && norm_gemm::available(weight.size(0)) && weight.size(2) == 1 &&
         weight.size(3) == 1;
}
namespace {

using PackedWeight = std::shared_ptr<const std::vector<float>>;
using PackCache = DerivedCache<PackedWeight, 1>;

// `weight` as rows() gives it ([n][k]) packed for norm_gemm: once per weight version in
// evaluation (kept in `cache`), per call while training (every step changes it).
template <class Rows>
PackedWeight packed_weight(PackCache& cache, const at::Tensor& weight, int64_t k, const Rows& rows) {
  const auto pack = [&] {
    const at::Tensor w = rows().contiguous();
    const int64_t n = weight.size(0);
    auto out = std::make_shared<std::vector<float>>(static_cast<std::size_t>(n * k));
    norm_gemm::pack_weight(w.data_ptr<float>(), n, k, out->data());
    return PackedWeight(std::move(out));
  };
  return at::GradMode::is_enabled() ? pack() : cache.get({&weight}, static_cast<double>(k), pack);
}

}  // namespace

at::Tensor norm_relu_conv1x1(at::ScalarType compute, const at::Tensor& x, const at::Tensor& scale,
                             const at::Tensor& shift, const at::Tensor& weight, const at::Tensor& bias, bool relu) {
  const int64_t n = weight.size(0);
  if (!norm_gemm_runs(compute, weight)) return {};
  const Panel p = panel_of(x);
  static auto* packs = new PackCache();  // never destroyed: used until the process ends
  const PackedWeight packed = packed_weight(*packs, weight, p.channels, [&] { return weight.reshape({n, p.channels}); });
  const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
  at::Tensor out = at::empty({x.size(0), n, x.size(2), x.size(3)}, x.options().memory_format(kChannelsLast));
  const norm_gemm::Args args{p.data, p.ld, p.channels, scale.defined() ? scale.data_ptr<float>() : nullptr,
                            shift.defined() ? shift.data_ptr<float>() : nullptr, packed->data(), n,
                            b.defined() ? b.data_ptr<float>() : nullptr, relu, out.data_ptr<float>(), n};
  // Few rows (late blocks and transitions at small batches: 7x7 = 49 pixels at batch 1): each
  // thread takes whole panels of output channels, and so reads only their weights, which then
  // outweigh the input (DenseNet-121's last transition, 49 x 1024 -> 512, 2 threads: 145 us against
  // 209 with the rows split); the rows are split too where the panels are fewer than the threads.
  const int64_t threads = at::get_num_threads();
  const int64_t width = norm_gemm::panel_width(n), panels = n / width;
  if (threads > 1 && !at::in_parallel_region() && p.rows < 2 * threads * norm_passes::kRowGrain && panels >= 2) {
    const int64_t row_chunks = std::max<int64_t>(1, std::min<int64_t>((threads + panels - 1) / panels, p.rows / 16));
    // Output channels [j0, j0 + count) of rows [r0, r1): one call where those panels are packed
    // as a product of `count` outputs reads them, else one per panel.
    const auto columns = [&](int64_t j0, int64_t count, int64_t r0, int64_t r1) {
      const int64_t step = norm_gemm::panel_width(count) == width ? count : width;
      for (int64_t j = j0; j < j0 + count; j += step) {
        norm_gemm::Args part = args;
        part.packed = args.packed + j * p.channels;
        part.n = step;
        part.bias = args.bias ? args.bias + j : nullptr;
        part.out = args.out + j;
        norm_gemm::rows(part, r0, r1);
      }
    };
    at::parallel_for(0, panels * row_chunks, 1, [&](int64_t first, int64_t last) {
      if (row_chunks == 1) return columns(first * width, (last - first) * width, 0, p.rows);
      for (int64_t task = first; task < last; ++task) {
        const int64_t chunk = task % row_chunks;
        columns(task / row_chunks * width, width, p.rows * chunk / row_chunks, p.rows * (chunk + 1) / row_chunks);
      }
    });
    return out;
  }
  parallel_chunks(0, p.rows, norm_passes::kRowGrain, [&](int64_t begin, int64_t end) { norm_gemm::rows(args, begin, end); });
  return out;
}

// The backward of norm_relu_conv1x1 (no bias, no output ReLU) with batch statistics, in one pass
// over x (norm_gemm::backward_rows): gx accumulates the part of x's gradient that passes the ReLU
// and the scale; returns the weight's gradient and the sums norm_grad_terms takes. Rows are split
// into one range per thread, each with its own weight gradient and sums, added in a fixed order.
std::pair<at::Tensor, std::pair<std::vector<double>, std::vector<double>>> norm_relu_conv1x1_backward(
    const at::Tensor& grad, const Panel& x, const Panel& gx, const NormAffine& a, const at::Tensor& mean,
    const at::Tensor& weight) {
  const int64_t n = weight.size(0), k = x.channels, kp = norm_gemm::padded_k(k);
  const at::Tensor g = grad.contiguous(kChannelsLast);
  const Panel gp = panel_of(g);
  const at::Tensor w = weight.reshape({n, k}).contiguous();
  std::vector<float> packed(static_cast<std::size_t>(n * kp));
  norm_gemm::pack_backward_weight(w.data_ptr<float>(), n, k, packed.data());
  const int64_t chunks = norm_passes::row_chunks(x.rows);
  at::Tensor partial = at::zeros({chunks, n, kp}, at::kFloat);
  std::vector<double> sums(static_cast<std::size_t>(chunks * 2 * k), 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    for (int64_t chunk = first; chunk < last; ++chunk) {
      double* s = sums.data() + chunk * 2 * k;
      const norm_gemm::BackwardArgs args{x.data, x.ld, k, a.scale.data_ptr<float>(), a.shift.data_ptr<float>(),
                                         mean.data_ptr<float>(), gp.data, gp.ld, n, packed.data(), gx.data, gx.ld,
                                         partial[chunk].data_ptr<float>(), s, s + k};
      norm_gemm::backward_rows(args, x.rows * chunk / chunks, x.rows * (chunk + 1) / chunks);
    }
  });
  std::vector<double> sum_gy(sums.begin(), sums.begin() + k), sum_gy_dx(sums.begin() + k, sums.begin() + 2 * k);
  for (int64_t chunk = 1; chunk < chunks; ++chunk)
    for (int64_t i = 0; i < k; ++i) {
      sum_gy[i] += sums[chunk * 2 * k + i];
      sum_gy_dx[i] += sums[chunk * 2 * k + k + i];
    }
  at::Tensor grad_weight = partial.sum(0).narrow(1, 0, k).contiguous().view(weight.sizes());
  return {grad_weight.contiguous(kChannelsLast), {std::move(sum_gy), std::move(sum_gy_dx)}};
}

// The dtype the block's LibTorch convolutions run in: bfloat16 under CPU autocast (the only
// autocast fused_block_supported admits), else float32. The activations the block keeps (its
// buffer, bottleneck outputs, pooled maps) are in this dtype too: the convolutions produce them in
// it, so a bfloat16 buffer holds them exactly and halves the bytes every normalisation pass
// reads. Batch norm's arithmetic, statistics and every gradient buffer stay float32, and so do
// norm_gemm's 1x1 convolutions.
at::ScalarType compute_dtype() {
  return at::autocast::is_autocast_enabled(at::kCPU) ? at::autocast::get_autocast_dtype(at::kCPU) : at::kFloat;
}

// A stride-1 convolution in `compute`; the result in `compute` too.
at::Tensor conv(at::ScalarType compute, const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                int64_t padding) {
  return at::conv2d(x.to(compute), weight.to(compute), bias.defined() ? bias.to(compute) : bias, /*stride=*/1,
                    /*padding=*/padding);
}

// The weight gradient of a float32 3x3 convolution (stride 1, padding 1) from grad and x
// ([N, n, H, W] and [N, c, H, W]) through norm_gemm's weight-gradient kernel: each thread takes
// whole images, copies each into a zero-bordered (H + 2) x (W + 2) grid of its own (the output
// gradient too, on the same grid) and runs the nine taps over it (conv3x3_weight_grad_rows).
// oneDNN's runs at a third to a half of sgemm's speed on AVX2 CPUs; 2 Zen 3 cores, fastest of 7:
// DenseNet-121's 128 -> 32 channels, batch 16, 56x56/28x28/14x14/7x7: 66.9/14.7/2.6/0.7 ms vs
// this 33.8/8.4/2.6/0.8 ms; BC-100's 48 -> 12, batch 64, 32x32/16x16/8x8: 16.4/3.5/0.9 vs
// 7.1/1.9/0.6 ms.
static at::Tensor conv3x3_weight_grad(const at::Tensor& grad, const at::Tensor& x) {
  const int64_t N = x.size(0), c = x.size(1), H = x.size(2), W = x.size(3), n = grad.size(1);
  const int64_t row = W + 2, grid = (H + 2) * row;
  const at::Tensor xs = x.to(at::kFloat).contiguous(kChannelsLast);
  const at::Tensor gs = grad.to(at::kFloat).contiguous(kChannelsLast);
  const float *px = xs.data_ptr<float>(), *pg = gs.data_ptr<float>();
  at::Tensor partial = at::zeros({at::get_num_threads(), 9, n, c}, at::kFloat);
  float* pw = partial.data_ptr<float>();
  at::parallel_for(0, N, 1, [&](int64_t first, int64_t last) {
    std::vector<float> xp(static_cast<std::size_t>((grid + 2 * row + 2) * c), 0.f);  // + the rows the last taps read
    std::vector<float> gp(static_cast<std::size_t>(grid * n), 0.f);
    float* gw = pw + at::get_thread_num() * 9 * n * c;
    for (int64_t image = first; image < last; ++image) {
      for (int64_t h = 0; h < H; ++h) {
        std::copy_n(px + (image * H + h) * W * c, W * c, xp.data() + ((h + 1) * row + 1) * c);
        std::copy_n(pg + (image * H + h) * W * n, W * n, gp.data() + h * row * n);
      }
      conv3x3::weight_grad_rows(gp.data(), n, xp.data(), c, row, 0, grid, gw);
    }
  });
  // [9][n][c] (tap-major) -> [n][c][3][3], laid out channels-last as the weight's gradient is.
  return partial.sum(0).view({3, 3, n, c}).permute({2, 3, 0, 1}).contiguous(kChannelsLast);
}

// A float32 3x3 convolution with padding 1 (stride 1): the kind densetorch's own 3x3 kernels compute.
static bool float_conv3x3(at::ScalarType compute, const at::Tensor& weight, int64_t padding) {
  return compute == at::kFloat && padding == 1 && weight.size(2) == 3 && weight.size(3) == 3;
}

// Output pixels of a batch at which a 3x3 convolution runs through norm_gemm's product in
// evaluation: DenseNet-121 at batch 1, 2 threads of an AVX-512 Xeon (Ice Lake), 128 -> 32
// channels: 14x14 (196 pixels) and 7x7 (49) faster than oneDNN's direct convolution, 28x28
// (784) not.
constexpr int64_t kGemm3x3MaxPixels = 256;

bool gemm3x3_runs(at::ScalarType compute, const at::Tensor& x, const at::Tensor& weight, int64_t padding) {
  return !at::GradMode::is_enabled() && float_conv3x3(compute, weight, padding) && norm_gemm::accelerated() &&
         norm_gemm::available(weight.size(0)) && x.size(2) * x.size(3) >= 2 &&
         x.size(0) * x.size(2) * x.size(3) <= kGemm3x3MaxPixels;
}

void conv3x3_gemm(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& dst) {
  const Panel in = panel_of(x), out = panel_of(dst);
  const int64_t n = weight.size(0), c = weight.size(1);
  TORCH_CHECK(in.channels == c && out.channels == n && dst.size(0) == x.size(0) && dst.size(2) == x.size(2) &&
                  dst.size(3) == x.size(3),
              "conv3x3_gemm: shapes do not match");
  static auto* packs = new PackCache();  // never destroyed: used until the process ends
  const PackedWeight packed =
      packed_weight(*packs, weight, 9 * c, [&] { return weight.permute({0, 2, 3, 1}).reshape({n, 9 * c}); });
  const norm_gemm::Conv3x3Args args{in.data, in.ld, c, x.size(2), x.size(3), packed->data(), n, out.data, out.ld};
  // Chunks of whole 12-row micro-tiles (a remainder row costs a third of a full tile).
  parallel_chunks(0, in.rows, 12, [&](int64_t begin, int64_t end) { norm_gemm::conv3x3_rows(args, begin, end); },
                  /*multiple=*/12);
}

// Whether a convolution with `weight` ([k, c, kh, kw]) and `padding` over H x W images runs
// through norm_gemm's Winograd kernel in `compute`: a float32 3x3 convolution with padding 1, for
// its forward and weight gradient (`forward`, c -> k channels) or its input gradient (k -> c).
// Forward needs images of 64 pixels or more: at 7x7 the 4x4 tiles' 8x8 outputs are 31% padding
// and oneDNN's direct convolution was as fast (2 Zen 3 cores, DenseNet-121's 128 -> 32 channels,
// batch 32: 0.84-0.91 vs 0.91-0.95 ms; 56x56/28x28/14x14: 41-44/12-19/3.1-4.6 vs 30-33/8.1-11/
// 2.2-2.4 ms). The input gradient (32 -> 128 channels) was faster at every size (7x7: 0.63-0.70
// vs 0.48-0.61 ms). (1x1 images stay with LibTorch: their tensors' strides need not be
// channels-last panels.)
bool winograd_runs(at::ScalarType compute, const at::Tensor& weight, int64_t padding, int64_t H, int64_t W,
                   bool forward) {
  if (!float_conv3x3(compute, weight, padding)) return false;
  const int64_t k = weight.size(0), c = weight.size(1);
  return own_conv3x3() && winograd::accelerated() && H * W >= (forward ? 64 : 2) &&
         (forward ? winograd::available(c, k) : winograd::available(k, c));
}

// dst = conv3x3(x, weight) (stride 1, padding 1; of relu(x * scale + shift) when scale is
// defined) through norm_gemm's Winograd kernel: x and dst channels-last float32 panels (dst may be
// a channel range of a block buffer), weight [k, c, 3, 3].
void conv3x3_winograd(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift, const at::Tensor& weight,
                      const at::Tensor& dst) {
  const Panel in = panel_of(x), out = panel_of(dst);
  const int64_t k = weight.size(0), c = weight.size(1), N = x.size(0), H = x.size(2), W = x.size(3);
  TORCH_CHECK(in.channels == c && out.channels == k && dst.size(0) == N && dst.size(2) == H && dst.size(3) == W,
              "conv3x3_winograd: shapes do not match");
  const at::Tensor w = weight.to(at::kFloat).contiguous();
  std::vector<float> packed(static_cast<std::size_t>(winograd::size(c, k)));
  winograd::pack_weight(w.data_ptr<float>(), k, c, packed.data());
  const winograd::Args args{{in.data, in.ld, N, H, W, c, scale.defined() ? scale.data_ptr<float>() : nullptr,
                                      shift.defined() ? shift.data_ptr<float>() : nullptr},
                                     packed.data(), k, out.data, out.ld};
  parallel_chunks(0, winograd::tile_count(N, H, W), 12,
                  [&](int64_t begin, int64_t end) { winograd::tiles(args, begin, end); });
}

// The weight gradient of a float32 3x3 convolution (stride 1, padding 1) from grad and x
// through norm_gemm's Winograd kernel: each thread sums its tiles' products into 16 matrices of
// (about) n x c of its own; the sum over threads is transformed back to [n, c, 3, 3] once.
static at::Tensor conv3x3_winograd_weight_grad(const at::Tensor& grad, const at::Tensor& x) {
  const at::Tensor xs = x.to(at::kFloat).contiguous(kChannelsLast);
  const at::Tensor gs = grad.to(at::kFloat).contiguous(kChannelsLast);
  const Panel in = panel_of(xs), g = panel_of(gs);
  const int64_t N = x.size(0), c = x.size(1), H = x.size(2), W = x.size(3), n = grad.size(1);
  const int64_t size = winograd::size(c, n);
  at::Tensor partial = at::zeros({at::get_num_threads(), size}, at::kFloat);
  float* pu = partial.data_ptr<float>();
  const winograd::GradArgs args{{in.data, in.ld, N, H, W, c, nullptr, nullptr}, g.data, g.ld, n};
  at::parallel_for(0, winograd::tile_count(N, H, W), 12, [&](int64_t begin, int64_t end) {
    winograd::weight_grad_tiles(args, begin, end, pu + at::get_thread_num() * size);
  });
  const at::Tensor u = partial.sum(0).contiguous();
  at::Tensor grad_weight = at::empty({n, c, 3, 3}, at::kFloat);
  winograd::weight_grad_finish(u.data_ptr<float>(), n, c, grad_weight.data_ptr<float>());
  return grad_weight.contiguous(kChannelsLast);  // laid out as the weight's gradient is
}

// Its backward in `compute`: the gradient of the input in `compute`, of the weight in float32.
std::pair<at::Tensor, at::Tensor> conv_backward(at::ScalarType compute, const at::Tensor& grad, const at::Tensor& x,
                                                const at::Tensor& weight, int64_t padding) {
  const int64_t H = x.size(2), W = x.size(3);
  // The weight's gradient: Winograd's (as forward), else the nine taps (images of 64 pixels or
  // more: at 7x7 the zero border makes 65% more rows and oneDNN's was as fast), else oneDNN's.
  const bool winograd_weight_grad = winograd_runs(compute, weight, padding, H, W, /*forward=*/true);
  const bool own_weight_grad = winograd_weight_grad ||
                               (float_conv3x3(compute, weight, padding) && H * W >= 64 && own_conv3x3() &&
                                conv3x3::accelerated() && conv3x3::weight_grad_available(weight.size(0), weight.size(1)));
  // The input's: the 3x3 convolution of grad with the weight's transpose, flipped.
  const bool winograd_input_grad = winograd_runs(compute, weight, padding, H, W, /*forward=*/false);
  at::Tensor grad_x, grad_weight;
  if (!winograd_input_grad || !own_weight_grad) {
    std::tie(grad_x, grad_weight, std::ignore) = at::convolution_backward(
        grad.to(compute), x.to(compute), weight.to(compute), std::nullopt, {1, 1}, {padding, padding}, {1, 1}, false,
        {0, 0}, 1, {!winograd_input_grad, !own_weight_grad, false});
  }
  if (winograd_input_grad) {
    grad_x = at::empty(x.sizes(), x.options().dtype(at::kFloat).memory_format(kChannelsLast));
    conv3x3_winograd(grad.to(at::kFloat).contiguous(kChannelsLast), {}, {}, weight.transpose(0, 1).flip({2, 3}), grad_x);
  }
  if (!own_weight_grad) return {grad_x, grad_weight.to(at::kFloat)};
  // Winograd's weight gradient where the kernel runs (2 Zen 3 cores, DenseNet-121's 128 -> 32,
  // batch 16, 56x56/28x28/14x14: the nine taps 32.0/8.8/2.1 ms, this 19.3/4.5/1.1; oneDNN's
  // 66.2/13.9/2.2; BC-100's 48 -> 12, batch 64, 32x32/16x16/8x8, fastest of 7, three runs: the
  // nine taps 5.0-6.8/1.24-1.61/0.40-0.50 ms, this 5.2-7.5/1.16-1.42/0.28-0.37, oneDNN's
  // 9.8-13.9/1.7-2.4/0.47-0.67), else the nine taps.
  if (winograd_weight_grad) return {grad_x, conv3x3_winograd_weight_grad(grad, x)};
  return {grad_x, conv3x3_weight_grad(grad, x)};
}

}  // namespace densetorch::convolutions
