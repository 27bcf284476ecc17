#include "roofline.h"

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

// `iterations` rounds of kChains FMAs on registers: acc = acc * a + b, which stays finite and
// normal (it converges to b / (1 - a)). Returns a sum of the accumulators so nothing is dropped.
#if defined(__x86_64__)
__attribute__((target("avx512f"))) float fma_chains_avx512(int64_t iterations) {
  __m512 acc[kChains];
#pragma GCC unroll 32
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-6f);
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 32
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  }
  __m512 sum = acc[0];
#pragma GCC unroll 32
  for (int i = 1; i < kChains; ++i) sum = _mm512_add_ps(sum, acc[i]);
  return _mm512_reduce_add_ps(sum);
}

__attribute__((target("avx2,fma"))) float fma_chains_avx2(int64_t iterations) {
  __m256 acc[kChains];
#pragma GCC unroll 32
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-6f);
  for (int64_t n = 0; n < iterations; ++n) {
#pragma GCC unroll 32
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  }
  alignas(32) float lanes[8];
  __m256 sum = acc[0];
#pragma GCC unroll 32
  for (int i = 1; i < kChains; ++i) sum = _mm256_add_ps(sum, acc[i]);
  _mm256_store_ps(lanes, sum);
  float total = 0;
  for (float v : lanes) total += v;
  return total;
}
#endif

float fma_chains_scalar(int64_t iterations) {
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = static_cast<float>(i);
  for (int64_t n = 0; n < iterations; ++n)
#pragma GCC unroll 32
    for (int i = 0; i < kChains; ++i) acc[i] = std::fma(acc[i], 0.999999f, 1e-6f);
  float total = 0;
  for (float v : acc) total += v;
  return total;
}

}  // namespace

FmaPeak fma_peak(double seconds, int reps) {
  float (*chains)(int64_t) = fma_chains_scalar;
  int64_t lanes = 1;
  const char* isa = "scalar";
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    chains = fma_chains_avx512, lanes = 16, isa = "avx512";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    chains = fma_chains_avx2, lanes = 8, isa = "avx2";
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
