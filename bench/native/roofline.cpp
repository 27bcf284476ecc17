#include "roofline.h"

#include "../../native/core/kernels/dispatch.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace densetorch {

std::vector<ConvShape> conv_shapes(const DenseNetConfig& c, int64_t height, int64_t width) {
  std::vector<ConvShape> out;
  int64_t h = height, w = width;
  auto add = [&](int64_t cin, int64_t cout, int64_t k, int64_t stride, int64_t pad, bool input_grad) {
    out.push_back({cin, cout, k, stride, pad, h, w, input_grad});
    h = out.back().out_height();
    w = out.back().out_width();
  };
  if (c.stem == Stem::kImageNet) {
    add(c.in_channels, c.num_init_features, 7, 2, 3, false);
    h = (h + 2 - 3) / 2 + 1;  // max pool 3x3, stride 2, padding 1
    w = (w + 2 - 3) / 2 + 1;
  } else {
    add(c.in_channels, c.num_init_features, 3, 1, 1, false);
  }
  int64_t channels = c.num_init_features;
  for (std::size_t b = 0; b < c.block_config.size(); ++b) {
    for (int64_t i = 0; i < c.block_config[b]; ++i) {
      const int64_t in = channels + i * c.growth_rate;
      const int64_t bh = h, bw = w;
      if (c.bn_size > 0) {
        add(in, c.bn_size * c.growth_rate, 1, 1, 0, true);
        add(c.bn_size * c.growth_rate, c.growth_rate, 3, 1, 1, true);
      } else {
        add(in, c.growth_rate, 3, 1, 1, true);
      }
      h = bh;
      w = bw;
    }
    channels += c.block_config[b] * c.growth_rate;
    if (b + 1 != c.block_config.size()) {
      const auto next = static_cast<int64_t>(std::floor(c.compression * static_cast<double>(channels)));
      h /= 2;  // average pool 2x2, before the 1x1 convolution (they commute; densenet.cpp)
      w /= 2;
      add(channels, next, 1, 1, 0, true);
      channels = next;
    }
  }
  h = w = 1;  // global average pool, then the classifier
  add(channels, c.num_classes, 1, 1, 0, true);
  return out;
}

double forward_flops(const std::vector<ConvShape>& shapes) {
  double total = 0;
  for (const auto& s : shapes) total += s.flops();
  return total;
}

namespace {

template <typename Fn>
double median_seconds(int reps, Fn&& fn) {
  fn();  // warm-up: oneDNN builds its primitive on first use
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    times.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

}  // namespace

namespace {

constexpr int kChains = 24;  // independent accumulators per thread

#if defined(__x86_64__)
DT_ISA_BEGIN("avx512f")
namespace avx512 {
struct Isa {
  using V = __m512;
  static constexpr int64_t kLanes = 16;
  static V set1(float f) { return _mm512_set1_ps(f); }
  static V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static float total(V v) { return _mm512_reduce_add_ps(v); }
};
#include "fma_chains.inc"
}  // namespace avx512
DT_ISA_END

DT_ISA_BEGIN("avx2,fma")
namespace avx2 {
struct Isa {
  using V = __m256;
  static constexpr int64_t kLanes = 8;
  static V set1(float f) { return _mm256_set1_ps(f); }
  static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static float total(V v) {
    alignas(32) float lanes[8];
    _mm256_store_ps(lanes, v);
    float sum = 0;
    for (float x : lanes) sum += x;
    return sum;
  }
};
#include "fma_chains.inc"
}  // namespace avx2
DT_ISA_END
#endif

namespace scalar {
struct Isa {
  using V = float;
  static constexpr int64_t kLanes = 1;
  static V set1(float f) { return f; }
  static V fma(V a, V b, V c) { return std::fma(a, b, c); }
  static V add(V a, V b) { return a + b; }
  static float total(V v) { return v; }
};
#include "fma_chains.inc"
}  // namespace scalar

}  // namespace

FmaPeak fma_peak(double seconds, int reps) {
  float (*chains)(int64_t) = scalar::fma_chains;
  int64_t lanes = scalar::Isa::kLanes;
  const char* isa = "scalar";
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    chains = avx512::fma_chains, lanes = avx512::Isa::kLanes, isa = "avx512";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    chains = avx2::fma_chains, lanes = avx2::Isa::kLanes, isa = "avx2";
  }
#endif
  const int threads = at::get_num_threads();
  std::atomic<float> sink{0};
  const auto run = [&](int64_t iterations) {
    const auto start = std::chrono::steady_clock::now();
    at::parallel_for(0, threads, 1, [&](int64_t first, int64_t last) {
      for (int64_t t = first; t < last; ++t) sink.store(sink.load() + chains(iterations));
    });
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  // Calibrate to about `seconds` per run (also warming the cores up), then take the fastest run.
  int64_t iterations = 1 << 16;
  while (run(iterations) < seconds / 4) iterations *= 2;
  iterations = static_cast<int64_t>(static_cast<double>(iterations) * seconds / run(iterations));
  double best = 0;
  for (int r = 0; r < reps; ++r) {
    const double flops = 2.0 * static_cast<double>(threads * iterations * kChains * lanes);
    best = std::max(best, flops / run(iterations) / 1e9);
  }
  return {best, isa};
}

double time_matmul(int64_t n, int reps) {
  at::NoGradGuard no_grad;
  const at::Tensor a = at::randn({n, n}), b = at::randn({n, n});
  return median_seconds(reps, [&] { (void)at::mm(a, b); });
}

double time_convolutions(const std::vector<ConvShape>& shapes, int64_t batch, bool backward, int reps) {
  at::NoGradGuard no_grad;
  const auto cl = at::MemoryFormat::ChannelsLast;
  double total = 0;
  for (const auto& s : shapes) {
    const at::Tensor x = at::randn({batch, s.in_channels, s.height, s.width}).contiguous(cl);
    const at::Tensor weight = at::randn({s.out_channels, s.in_channels, s.kernel, s.kernel}).contiguous(cl);
    const std::vector<int64_t> stride{s.stride, s.stride}, padding{s.padding, s.padding}, dilation{1, 1};
    total += median_seconds(reps, [&] { (void)at::conv2d(x, weight, {}, stride, padding); });
    if (backward) {
      const at::Tensor grad = at::randn({batch, s.out_channels, s.out_height(), s.out_width()}).contiguous(cl);
      total += median_seconds(reps, [&] {
        (void)at::convolution_backward(grad, x, weight, std::nullopt, stride, padding, dilation, false, {0, 0}, 1,
                                       {s.input_grad, true, false});
      });
    }
  }
  return total;
}

}  // namespace densetorch
