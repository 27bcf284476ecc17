#include "fused_block.h"
#include "env_switches.h"

#include "norm_gemm.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <type_traits>

// The per-pixel loops below are plain C++ that the compiler vectorises; on x86-64 Linux each is
// built for AVX-512, x86-64-v3 (AVX2 with FMA: an "avx2" clone has no fused multiply-adds, so
// its x * scale + shift rounded differently from norm_gemm's and the AVX-512 passes') and
// baseline x86-64, and the loader picks one for the CPU it runs on. Not under ThreadSanitizer:
// the loader runs the clones' instrumented resolvers before the sanitizer's runtime can serve them.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && !defined(__SANITIZE_THREAD__)
#define DT_VECTOR_KERNEL \
  __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default"), optimize("O3", "tree-vectorize")))
#define DT_AVX512_PASSES 1
#include <immintrin.h>
#else
#define DT_VECTOR_KERNEL
#endif

namespace densetorch {

namespace fused_kernels {

// A row-major panel of an activation: row p is pixel p (channels-last), its C channels start at
// data + p * ld. A view of some channels of a block buffer is a panel with ld = the buffer's width.
// Elements are float32 (Panel) or bfloat16 bits (PanelOf<uint16_t>: under bfloat16 autocast the
// block buffer, bottleneck outputs and pooled maps, a convolution's input or input gradient).
template <class T>
struct PanelOf {
  T* data;
  int64_t ld;
  int64_t rows;
  int64_t channels;
};
using Panel = PanelOf<float>;

template <class T = float>
PanelOf<T> panel_of(const at::Tensor& t) {
  // [N, C, H, W] with channels innermost and pixels evenly strided (a channels-last tensor or a
  // channel range of one).
  constexpr at::ScalarType dtype = std::is_same_v<T, float> ? at::kFloat : at::kBFloat16;
  if (t.dim() != 4 || t.scalar_type() != dtype || t.stride(1) != 1 || t.stride(2) != t.size(3) * t.stride(3) ||
      t.stride(0) != t.size(2) * t.stride(2))
    throw std::logic_error("fused dense block: expected a channels-last " + std::string(c10::toString(dtype)) +
                           " panel, got " + std::string(c10::toString(t.scalar_type())) + " with strides " +
                           c10::str(t.strides()));
  return {static_cast<T*>(t.data_ptr()), t.stride(3), t.size(0) * t.size(2) * t.size(3), t.size(1)};
}

// bfloat16 <-> float32 as LibTorch rounds (to nearest even; NaN stays NaN).
inline uint16_t to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return f != f ? uint16_t{0x7FC0} : static_cast<uint16_t>((u + (((u >> 16) & 1u) + 0x7FFFu)) >> 16);
}
inline float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
inline float as_float(float v) { return v; }
inline float as_float(uint16_t v) { return from_bf16(v); }
inline void store(float& y, float v) { y = v; }
inline void store(uint16_t& y, float v) { y = to_bf16(v); }

#ifdef DT_AVX512_PASSES
// The compiler vectorises to_bf16's rounding poorly (normalising into bfloat16 ran at a quarter of
// the speed of the same pass into float32): AVX-512F intrinsics for the passes that write
// bfloat16 (rounding to nearest even, every NaN to 0x7FC0), with fused multiply-adds where the
// compiler contracts the generic kernels' expressions into them.
namespace avx512 {
// GCC 12 reports the _mm512_undefined_*() inside these intrinsics as maybe uninitialised.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC push_options
#pragma GCC target("avx512f")
inline __m256i to_bf16(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7FFF))), 16);
  r = _mm512_mask_mov_epi32(r, _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), _mm512_set1_epi32(0x7FC0));
  return _mm512_cvtepi32_epi16(r);
}
inline __m512 load(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load(const uint16_t* p) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

// norm_relu_rows (below) into bfloat16.
template <class X>
void norm_relu_rows(const X* __restrict x, int64_t ldx, uint16_t* __restrict y, int64_t ldy, int64_t rows, int64_t C,
                    const float* __restrict scale, const float* __restrict shift) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* __restrict xr = x + r * ldx;
    uint16_t* __restrict yr = y + r * ldy;
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
      // Fused multiply-add, as the compiler contracts the generic kernels' x * scale + shift
      // (backward's ReLU masks are computed so too). max(0, v) is v when v is NaN (the second
      // operand), as torch.relu.
      const __m512 v = _mm512_fmadd_ps(load(xr + c), _mm512_loadu_ps(scale + c), _mm512_loadu_ps(shift + c));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(yr + c), to_bf16(_mm512_max_ps(_mm512_setzero_ps(), v)));
    }
    for (; c < C; ++c) {
      const float v = as_float(xr[c]) * scale[c] + shift[c];
      store(yr[c], v < 0.f ? 0.f : v);
    }
  }
}

// affine_add_into_rows (below) into bfloat16: out = fma(k1, x - mean, g) + k0.
template <class X>
void affine_add_into_rows(const X* __restrict x, int64_t ldx, const float* __restrict g, int64_t ldg,
                          uint16_t* __restrict out, int64_t ldo, int64_t rows, int64_t C, const float* __restrict mean,
                          const float* __restrict k1, const float* __restrict k0) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* __restrict xr = x + r * ldx;
    const float* __restrict gr = g + r * ldg;
    uint16_t* __restrict outr = out + r * ldo;
    int64_t c = 0;
    for (; c + 16 <= C; c += 16) {
      const __m512 d = _mm512_sub_ps(load(xr + c), _mm512_loadu_ps(mean + c));
      const __m512 v = _mm512_add_ps(_mm512_fmadd_ps(_mm512_loadu_ps(k1 + c), d, _mm512_loadu_ps(gr + c)),
                                     _mm512_loadu_ps(k0 + c));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(outr + c), to_bf16(v));
    }
    for (; c < C; ++c) store(outr[c], gr[c] + k1[c] * (as_float(xr[c]) - mean[c]) + k0[c]);
  }
}
#pragma GCC pop_options
#pragma GCC diagnostic pop
}  // namespace avx512

// Whether this CPU runs the avx512 passes above.
inline bool use_avx512() {
  static const bool yes = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f");
  }();
  return yes;
}
#endif

constexpr int64_t kRowGrain = 64;   // rows per parallel task at least
constexpr int64_t kSumBlock = 64;   // rows summed in float before adding into double

// A channel count known at compile time for the widths a dense layer's new features have (the
// growth rates of the standard presets): loops over a run-time C of 12 or 32 channels per pixel
// vectorise poorly (a vector loop for at most a few iterations, then a scalar tail, every pixel),
// with the count a constant the compiler unrolls them into straight vector code. Kernels take
// `Width C` and loop to `int64_t(C)`; with_width calls f with the constant or the plain count.
template <class F>
decltype(auto) with_width(int64_t C, F&& f) {
  switch (C) {
#define DT_WIDTH(c) \
  case c:           \
    return f(std::integral_constant<int64_t, c>{});
    DT_WIDTH(12) DT_WIDTH(24) DT_WIDTH(32) DT_WIDTH(40) DT_WIDTH(48)
#undef DT_WIDTH
    default:
      return f(C);
  }
}

template <class X, class Width>
DT_VECTOR_KERNEL void sum_rows(const X* __restrict x, int64_t ldx, int64_t rows, Width C, float* __restrict acc) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* __restrict xr = x + r * ldx;
    for (int64_t c = 0; c < int64_t(C); ++c) acc[c] += as_float(xr[c]);
  }
}

// dst = src row by row (both of one element type), and acc += src per channel.
template <class X, class Width>
DT_VECTOR_KERNEL void copy_sum_rows(const X* __restrict src, int64_t lds, X* __restrict dst, int64_t ldd, int64_t rows,
                                    Width C, float* __restrict acc) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* __restrict sr = src + r * lds;
    X* __restrict dr = dst + r * ldd;
    for (int64_t c = 0; c < int64_t(C); ++c) {
      dr[c] = sr[c];
      acc[c] += as_float(sr[c]);
    }
  }
}

template <class X, class Width>
DT_VECTOR_KERNEL void squared_deviation_rows(const X* __restrict x, int64_t ldx, int64_t rows, Width C,
                                             const float* __restrict mean, float* __restrict acc) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* __restrict xr = x + r * ldx;
    for (int64_t c = 0; c < int64_t(C); ++c) {
      const float d = as_float(xr[c]) - mean[c];
      acc[c] += d * d;
    }
  }
}

// y = relu(x * scale + shift); NaN stays NaN, as torch.relu. X, Y: float, or bfloat16 bits
// (under autocast).
template <class X, class Y>
DT_VECTOR_KERNEL void norm_relu_rows(const X* __restrict x, int64_t ldx, Y* __restrict y, int64_t ldy,
                                     int64_t rows, int64_t C, const float* __restrict scale,
                                     const float* __restrict shift) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* __restrict xr = x + r * ldx;
    Y* __restrict yr = y + r * ldy;
    for (int64_t c = 0; c < C; ++c) {
      const float v = as_float(xr[c]) * scale[c] + shift[c];
      store(yr[c], v < 0.f ? 0.f : v);
    }
  }
}

// y[p] = 0.25 * sum of relu(x * scale + shift) over the 2x2 window of output pixel p, for `width`
// output pixels of one output row: x0, x1 are the two input rows (channels-last, pixels ldp
// elements apart), y the output row (of x's element type).
template <class X>
DT_VECTOR_KERNEL void norm_relu_pool2_row(const X* __restrict x0, const X* __restrict x1, int64_t ldp,
                                          X* __restrict y, int64_t width, int64_t C,
                                          const float* __restrict scale, const float* __restrict shift) {
  for (int64_t w = 0; w < width; ++w) {
    const X* a = x0 + 2 * w * ldp;
    const X* b = x1 + 2 * w * ldp;
    X* __restrict yw = y + w * C;
    for (int64_t c = 0; c < C; ++c) {
      const float v00 = as_float(a[c]) * scale[c] + shift[c], v01 = as_float(a[ldp + c]) * scale[c] + shift[c];
      const float v10 = as_float(b[c]) * scale[c] + shift[c], v11 = as_float(b[ldp + c]) * scale[c] + shift[c];
      store(yw[c], 0.25f * ((v00 < 0.f ? 0.f : v00) + (v01 < 0.f ? 0.f : v01) + (v10 < 0.f ? 0.f : v10) +
                            (v11 < 0.f ? 0.f : v11)));
    }
  }
}

// One pass of the backward of relu(x * scale + shift) with batch statistics: gy = the gradient
// that passes the ReLU; sums of gy and of gy * (x - mean) per channel; gx += scale * gy (or =,
// without kAccumulate). The rest of the input gradient is affine in x per channel; in a block it
// is the same kind of term for every layer that reads x, so it is summed over those layers and
// added once (affine_add_rows).
template <bool kAccumulate, class G, class X>
DT_VECTOR_KERNEL void norm_relu_grad_rows(const G* __restrict g, int64_t ldg, const X* __restrict x,
                                                     int64_t ldx, float* __restrict gx, int64_t ldgx, int64_t rows,
                                                     int64_t C, const float* __restrict scale,
                                                     const float* __restrict shift, const float* __restrict mean,
                                                     float* __restrict sum_gy, float* __restrict sum_gy_dx) {
  for (int64_t r = 0; r < rows; ++r) {
    const G* __restrict gr = g + r * ldg;
    const X* __restrict xr = x + r * ldx;
    float* __restrict gxr = gx + r * ldgx;
    for (int64_t c = 0; c < C; ++c) {
      const float g_in = as_float(gr[c]);  // loaded unconditionally: the loop vectorises
      const float xc = as_float(xr[c]);
      const float gy = xc * scale[c] + shift[c] > 0.f ? g_in : 0.f;
      sum_gy[c] += gy;
      sum_gy_dx[c] += gy * (xc - mean[c]);
      gxr[c] = (kAccumulate ? gxr[c] : 0.f) + scale[c] * gy;
    }
  }
}

// gx += k1 * (x - mean) + k0.
template <class X, class Width>
DT_VECTOR_KERNEL void affine_add_rows(const X* __restrict x, int64_t ldx, float* __restrict gx, int64_t ldgx,
                                      int64_t rows, Width C, const float* __restrict mean,
                                      const float* __restrict k1, const float* __restrict k0) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* __restrict xr = x + r * ldx;
    float* __restrict gxr = gx + r * ldgx;
    for (int64_t c = 0; c < int64_t(C); ++c) gxr[c] += k1[c] * (as_float(xr[c]) - mean[c]) + k0[c];
  }
}

// out = g + k1 * (x - mean) + k0 (out another panel than g, float32 or bfloat16).
template <class X, class O, class Width>
DT_VECTOR_KERNEL void affine_add_into_rows(const X* __restrict x, int64_t ldx, const float* __restrict g, int64_t ldg,
                                           O* __restrict out, int64_t ldo, int64_t rows, Width C,
                                           const float* __restrict mean, const float* __restrict k1,
                                           const float* __restrict k0) {
  for (int64_t r = 0; r < rows; ++r) {
    const X* __restrict xr = x + r * ldx;
    const float* __restrict gr = g + r * ldg;
    O* __restrict outr = out + r * ldo;
    for (int64_t c = 0; c < int64_t(C); ++c) store(outr[c], gr[c] + k1[c] * (as_float(xr[c]) - mean[c]) + k0[c]);
  }
}

// Per-channel sums over the rows of panels, in parallel: `sum(begin, end, acc1, acc2)` adds rows
// [begin, end) into float accumulators of C channels; blocks of kSumBlock rows are added into
// double totals. Deterministic for a given thread count.
// Row ranges for per-thread partial sums: one per thread, at least kRowGrain rows each.
int64_t row_chunks(int64_t rows) {
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), rows / kRowGrain));
}

template <class Sum>
std::pair<std::vector<double>, std::vector<double>> sum_over_rows(int64_t rows, int64_t C, const Sum& sum) {
  const int64_t chunks = row_chunks(rows);
  std::vector<double> totals1(static_cast<std::size_t>(chunks * C), 0.0), totals2(totals1.size(), 0.0);
  at::parallel_for(0, chunks, 1, [&](int64_t first, int64_t last) {
    std::vector<float> acc1(static_cast<std::size_t>(C)), acc2(static_cast<std::size_t>(C));
    for (int64_t chunk = first; chunk < last; ++chunk) {
      const int64_t end = rows * (chunk + 1) / chunks;
      for (int64_t b = rows * chunk / chunks; b < end; b += kSumBlock) {
        std::fill(acc1.begin(), acc1.end(), 0.f);
        std::fill(acc2.begin(), acc2.end(), 0.f);
        sum(b, std::min(end, b + kSumBlock), acc1.data(), acc2.data());
        double* t1 = totals1.data() + chunk * C;
        double* t2 = totals2.data() + chunk * C;
        for (int64_t c = 0; c < C; ++c) {
          t1[c] += acc1[c];
          t2[c] += acc2[c];
        }
      }
    }
  });
  for (int64_t chunk = 1; chunk < chunks; ++chunk)
    for (int64_t c = 0; c < C; ++c) {
      totals1[c] += totals1[chunk * C + c];
      totals2[c] += totals2[chunk * C + c];
    }
  totals1.resize(static_cast<std::size_t>(C));
  totals2.resize(static_cast<std::size_t>(C));
  return {std::move(totals1), std::move(totals2)};
}

template <class Rows>
void over_rows(int64_t rows, const Rows& f) {
  at::parallel_for(0, rows, kRowGrain, f);
}

at::Tensor float_vector(const std::vector<double>& v) {
  at::Tensor t = at::empty({static_cast<int64_t>(v.size())}, at::kFloat);
  std::copy(v.begin(), v.end(), t.data_ptr<float>());
  return t;
}

// Calls f with t's panel: PanelOf<float> or PanelOf<uint16_t> (bfloat16).
template <class F>
decltype(auto) visit_panel(const at::Tensor& t, F&& f) {
  if (t.scalar_type() == at::kBFloat16) return f(panel_of<uint16_t>(t));
  return f(panel_of<float>(t));
}

// Mean and biased variance of every channel of a panel from its per-channel sums (two passes:
// exact for any offset).
template <class X>
std::pair<at::Tensor, at::Tensor> stats_from_sums(const PanelOf<X>& x, const std::vector<double>& sums) {
  std::vector<double> mean(sums);
  for (auto& m : mean) m /= static_cast<double>(x.rows);
  const at::Tensor mean_f = float_vector(mean);
  const float* mp = mean_f.data_ptr<float>();
  const auto dev = with_width(x.channels, [&](auto C) {
    return sum_over_rows(x.rows, C, [&](int64_t b, int64_t e, float* acc, float*) {
      squared_deviation_rows(x.data + b * x.ld, x.ld, e - b, C, mp, acc);
    });
  });
  std::vector<double> var(dev.first);
  for (auto& v : var) v /= static_cast<double>(x.rows);
  return {mean_f, float_vector(var)};
}

template <class X>
std::pair<at::Tensor, at::Tensor> channel_stats(const PanelOf<X>& x) {
  const auto sums = with_width(x.channels, [&](auto C) {
    return sum_over_rows(x.rows, C, [&](int64_t b, int64_t e, float* acc, float*) {
      sum_rows(x.data + b * x.ld, x.ld, e - b, C, acc);
    });
  });
  return stats_from_sums(x, sums.first);
}

// The same of a channels-last float32 or bfloat16 tensor (or a channel range of one).
std::pair<at::Tensor, at::Tensor> channel_stats(const at::Tensor& x) {
  return visit_panel(x, [](const auto& p) { return channel_stats(p); });
}

// dst = src (channels-last tensors of one dtype, dst a channel range of a block buffer: the new
// features of a layer), in parallel. training: also returns src's batch statistics (channel_stats
// of the copy, with the sums taken while copying and the deviations from the dense src).
std::pair<at::Tensor, at::Tensor> append_features(const at::Tensor& src, const at::Tensor& dst, bool training) {
  return visit_panel(src, [&](const auto& s) {
    using X = std::remove_const_t<std::remove_pointer_t<decltype(s.data)>>;
    const PanelOf<X> d = panel_of<X>(dst);
    return with_width(s.channels, [&](auto C) -> std::pair<at::Tensor, at::Tensor> {
      if (!training) {
        over_rows(s.rows, [&](int64_t b, int64_t e) {
          for (int64_t r = b; r < e; ++r) std::copy(s.data + r * s.ld, s.data + r * s.ld + int64_t(C), d.data + r * d.ld);
        });
        return {};
      }
      const auto sums = sum_over_rows(s.rows, C, [&](int64_t b, int64_t e, float* acc, float*) {
        copy_sum_rows(s.data + b * s.ld, s.ld, d.data + b * d.ld, d.ld, e - b, C, acc);
      });
      return stats_from_sums(s, sums.first);
    });
  });
}

template <class X, class Y>
void norm_relu(const PanelOf<X>& x, const PanelOf<Y>& y, const at::Tensor& scale, const at::Tensor& shift) {
  const float* s = scale.data_ptr<float>();
  const float* t = shift.data_ptr<float>();
#ifdef DT_AVX512_PASSES
  if constexpr (std::is_same_v<Y, uint16_t>) {
    if (use_avx512())
      return over_rows(x.rows, [&](int64_t b, int64_t e) {
        avx512::norm_relu_rows(x.data + b * x.ld, x.ld, y.data + b * y.ld, y.ld, e - b, x.channels, s, t);
      });
  }
#endif
  over_rows(x.rows, [&](int64_t b, int64_t e) {
    norm_relu_rows(x.data + b * x.ld, x.ld, y.data + b * y.ld, y.ld, e - b, x.channels, s, t);
  });
}

// y = relu(x * scale + shift), x and y channels-last float32 or bfloat16 (each its own).
void norm_relu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& scale, const at::Tensor& shift) {
  visit_panel(x, [&](const auto& xp) { visit_panel(y, [&](const auto& yp) { norm_relu(xp, yp, scale, shift); }); });
}


// avg_pool2d(relu(x * scale + shift), 2, 2) of a channels-last float32 or bfloat16 tensor in one
// pass, into a new channels-last tensor of its dtype (odd last rows and columns dropped, as
// avg_pool2d without ceil_mode).
at::Tensor norm_relu_pool2(const at::Tensor& x_in, const at::Tensor& scale, const at::Tensor& shift) {
  const at::Tensor x = x_in.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), OH = H / 2, OW = W / 2;
  at::Tensor y = at::empty({N, C, OH, OW}, x.options().memory_format(at::MemoryFormat::ChannelsLast));
  const float* s = scale.data_ptr<float>();
  const float* t = shift.data_ptr<float>();
  visit_panel(x, [&](const auto& xp) {
    const auto yp = static_cast<decltype(xp.data)>(y.data_ptr());  // y has x's dtype
    at::parallel_for(0, N * OH, 1, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / OH, oh = row % OH;
        const auto* x0 = xp.data + ((n * H + 2 * oh) * W) * C;
        norm_relu_pool2_row(x0, x0 + W * C, C, yp + row * OW * C, OW, C, s, t);
      }
    });
  });
  return y;
}

// The backward of norm_relu_pool2 with batch statistics, one pass over x: gp is the pooled map's
// gradient already multiplied by the window's weight (0.25); every input pixel inside a window
// takes its window's gradient through the ReLU and the scale (pixels of an odd last row or column
// take none). gx = scale * gy (written, not accumulated); returns the sums of gy and of
// gy * (x - mean) per channel, for norm_grad_terms.
std::pair<std::vector<double>, std::vector<double>> norm_relu_pool2_grad(const at::Tensor& x, const at::Tensor& gp,
                                                                         const at::Tensor& gx, const at::Tensor& scale,
                                                                         const at::Tensor& shift,
                                                                         const at::Tensor& mean) {
  const int64_t C = x.size(1), H = x.size(2), W = x.size(3), OH = gp.size(2), OW = gp.size(3);
  const float* g = gp.data_ptr<float>();
  float* gxp = gx.data_ptr<float>();
  const float *s = scale.data_ptr<float>(), *t = shift.data_ptr<float>(), *m = mean.data_ptr<float>();
  return visit_panel(x, [&](const auto& xpanel) {
    const auto* xp = xpanel.data;  // x's pixels, float32 or bfloat16
    return sum_over_rows(x.size(0) * H * W, C, [&](int64_t b, int64_t e, float* acc1, float* acc2) {
      for (int64_t p = b; p < e;) {
        // The run of pixels from p to the end of its window's pair of columns (or of its row).
        const int64_t w = p % W, h = (p / W) % H, n = p / (W * H);
        const int64_t ow = w / 2, oh = h / 2;
        const bool inside = ow < OW && oh < OH;
        const int64_t run = std::min(e - p, inside ? 2 - w % 2 : W - w);
        if (inside) {
          norm_relu_grad_rows<false>(g + ((n * OH + oh) * OW + ow) * C, 0, xp + p * C, C, gxp + p * C, C, run, C, s, t, m,
                                     acc1, acc2);
        } else {
          std::fill(gxp + p * C, gxp + (p + run) * C, 0.f);
        }
        p += run;
      }
    });
  });
}

// max_pool2d(relu(x * scale + shift), 3, stride 2, padding 1) (ImageNet stem) for the input rows
// around one output row: the three rows 2*oh-1..2*oh+1 of image n (those inside the image) are
// normalised into `rows` (3 x W x C floats) by norm_relu_rows, so that forward and backward see
// bitwise the same values; returns the first of them and their count.
struct StemWindow {
  int64_t first, count;
};
template <class X>
StemWindow normalise_window_rows(const X* x, int64_t n, int64_t oh, int64_t H, int64_t W, int64_t C,
                                 const float* s, const float* t, float* rows) {
  const int64_t first = std::max<int64_t>(0, 2 * oh - 1), last = std::min<int64_t>(H, 2 * oh + 2);
  norm_relu_rows(x + (n * H + first) * W * C, C, rows, C, (last - first) * W, C, s, t);
  return {first, last - first};
}

// Output size of a 3x3, stride 2, padding 1 pooling over `size` pixels.
int64_t stem_pooled(int64_t size) { return (size - 1) / 2 + 1; }

// The input columns of output column ow: [first, last).
std::pair<int64_t, int64_t> window_columns(int64_t ow, int64_t W) {
  return {std::max<int64_t>(0, 2 * ow - 1), std::min<int64_t>(W, 2 * ow + 2)};
}

// m = max(m, v) per channel, NaN winning as in max_pool2d.
DT_VECTOR_KERNEL void max_into(const float* __restrict v, float* __restrict m, int64_t C) {
  for (int64_t c = 0; c < C; ++c) m[c] = (v[c] > m[c] || v[c] != v[c]) ? v[c] : m[c];
}

// Where each channel's maximum is so far: (best, at) = (v, pixel) where v beats best (or is NaN),
// so the first maximum in scan order wins ties, as in max_pool2d.
DT_VECTOR_KERNEL void argmax_into(const float* __restrict v, float* __restrict best, int32_t* __restrict at,
                                  int32_t pixel, int64_t C) {
  for (int64_t c = 0; c < C; ++c) {
    const bool take = v[c] > best[c] || v[c] != v[c];
    best[c] = take ? v[c] : best[c];
    at[c] = take ? pixel : at[c];
  }
}

// max_pool2d(relu(x * scale + shift), 3, 2, 1) of a channels-last float32 or bfloat16 x in one
// pass, into a new channels-last float32 tensor.
at::Tensor norm_relu_maxpool(const at::Tensor& x_in, const at::Tensor& scale, const at::Tensor& shift) {
  const at::Tensor x = x_in.contiguous(at::MemoryFormat::ChannelsLast);
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), OH = stem_pooled(H), OW = stem_pooled(W);
  at::Tensor y = at::empty({N, C, OH, OW}, x.options().dtype(at::kFloat).memory_format(at::MemoryFormat::ChannelsLast));
  const float *s = scale.data_ptr<float>(), *t = shift.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  visit_panel(x, [&](const auto& xpanel) {
    at::parallel_for(0, N * OH, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> rows(static_cast<std::size_t>(3 * W * C));
      for (int64_t row = begin; row < end; ++row) {
        const StemWindow win = normalise_window_rows(xpanel.data, row / OH, row % OH, H, W, C, s, t, rows.data());
        for (int64_t ow = 0; ow < OW; ++ow) {
          float* m = yp + (row * OW + ow) * C;
          std::fill(m, m + C, -std::numeric_limits<float>::infinity());
          const auto [c0, c1] = window_columns(ow, W);
          for (int64_t r = 0; r < win.count; ++r)
            for (int64_t iw = c0; iw < c1; ++iw) max_into(rows.data() + (r * W + iw) * C, m, C);
        }
      }
    });
  });
  return y;
}

// The backward of norm_relu_maxpool up to the ReLU's output: gz (float32, zeroed here, x's shape)
// receives each output's gradient at its window's maximum (the first in scan order on ties, as
// max_pool2d). Images in parallel: windows overlap, images do not.
void norm_relu_maxpool_grad(const at::Tensor& x, const at::Tensor& g, const at::Tensor& gz, const at::Tensor& scale,
                            const at::Tensor& shift) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3), OH = g.size(2), OW = g.size(3);
  const float *gp = g.data_ptr<float>(), *s = scale.data_ptr<float>(), *t = shift.data_ptr<float>();
  float* gzp = gz.data_ptr<float>();
  visit_panel(x, [&](const auto& xpanel) {
    at::parallel_for(0, N, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> rows(static_cast<std::size_t>(3 * W * C)), best(static_cast<std::size_t>(C));
      std::vector<int32_t> argmax(static_cast<std::size_t>(C));  // each channel's maximum: its pixel in the image
      for (int64_t n = begin; n < end; ++n) {
        float* gzn = gzp + n * H * W * C;
        std::fill(gzn, gzn + H * W * C, 0.f);
        for (int64_t oh = 0; oh < OH; ++oh) {
          const StemWindow win = normalise_window_rows(xpanel.data, n, oh, H, W, C, s, t, rows.data());
          for (int64_t ow = 0; ow < OW; ++ow) {
            const float* go = gp + ((n * OH + oh) * OW + ow) * C;
            const auto [c0, c1] = window_columns(ow, W);
            std::fill(best.begin(), best.end(), -std::numeric_limits<float>::infinity());
            for (int64_t r = 0; r < win.count; ++r)
              for (int64_t iw = c0; iw < c1; ++iw)
                argmax_into(rows.data() + (r * W + iw) * C, best.data(), argmax.data(),
                            static_cast<int32_t>((win.first + r) * W + iw), C);
            for (int64_t c = 0; c < C; ++c) gzn[argmax[c] * C + c] += go[c];
          }
        }
      }
    });
  });
}

}  // namespace fused_kernels

namespace {

using fused_kernels::Panel;
using fused_kernels::PanelOf;
using fused_kernels::panel_of;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;

// at::parallel_for over [begin, end) with the range handed out in chunks as the threads ask for
// them instead of one fixed share each: a thread whose core runs slower for a while (another
// tenant on it) takes fewer chunks instead of keeping the others waiting at the end. For loops
// whose iterations write disjoint outputs only (no per-thread sums): which thread runs a chunk
// changes nothing in the result.
template <class F>
void parallel_chunks(int64_t begin, int64_t end, int64_t grain, const F& f) {
  const int64_t threads = at::get_num_threads();
  const int64_t chunk = std::max<int64_t>(grain, (end - begin + 8 * threads - 1) / (8 * threads));
  if (threads <= 1 || end - begin <= chunk || at::in_parallel_region()) return f(begin, end);
  std::atomic<int64_t> next{begin};
  at::parallel_for(0, threads, 1, [&](int64_t, int64_t) {
    for (int64_t b = next.fetch_add(chunk); b < end; b = next.fetch_add(chunk)) f(b, std::min(end, b + chunk));
  });
}

std::atomic<int> fused_override{-1};  // -1: from the environment

// A channels-last tensor of `like`'s shape: a view of `storage` (at least like.numel() floats).
// A block's layers produce ever wider normalised inputs and same-sized bottleneck tensors; one
// allocation reused by every layer stays in the cache and never grows the heap, where a fresh
// tensor per layer meant first-touch page faults and cold writes (naive DenseNet-121 training
// at batch 16 kept each normalised input: 0.23 s of a 1.7 s step in that pass alone, vs 0.04 s
// into reused storage, and 4-5 slow steps before the heap settled).
at::Tensor view_of(const at::Tensor& storage, const at::Tensor& like) {
  return storage.narrow(0, 0, like.numel())
      .view({like.size(0), like.size(2), like.size(3), like.size(1)})
      .permute({0, 3, 1, 2});
}

// relu(batch_norm(x)) of a panel into a view of `storage` (float32, or bfloat16 for a bfloat16
// convolution).
at::Tensor normalized(const at::Tensor& x, const at::Tensor& scale, const at::Tensor& shift,
                      const at::Tensor& storage) {
  at::Tensor y = view_of(storage, x);
  fused_kernels::norm_relu(x, y, scale, shift);
  return y;
}

// conv1x1(relu(x * scale + shift), weight) (+ bias, then ReLU when `relu`) in one pass over the
// panel x (norm_gemm.h): the normalised input is formed tile by tile in the cache, never written.
// A new channels-last tensor; undefined when this CPU or shape has no kernel, or when the block
// computes in bfloat16 (the caller then normalises into storage and convolves). Under bfloat16
// autocast every convolution runs in bfloat16 through LibTorch: faster there than this float32
// kernel (BC-100 training 0.61 vs 0.64 s/step, DenseNet-121 0.91 vs 0.96 s, inference too).
bool norm_gemm_runs(at::ScalarType compute, const at::Tensor& weight) {
  return compute == at::kFloat && norm_gemm::available(weight.size(0)) && weight.size(2) == 1 && weight.size(3) == 1;
}
at::Tensor norm_relu_conv1x1(at::ScalarType compute, const at::Tensor& x, const at::Tensor& scale,
                             const at::Tensor& shift, const at::Tensor& weight, const at::Tensor& bias, bool relu) {
  const int64_t n = weight.size(0);
  if (!norm_gemm_runs(compute, weight)) return {};
  const Panel p = panel_of(x);
  const at::Tensor w = weight.reshape({n, p.channels}).contiguous();
  std::vector<float> packed(static_cast<std::size_t>(n * p.channels));
  norm_gemm::pack_weight(w.data_ptr<float>(), n, p.channels, packed.data());
  const at::Tensor b = bias.defined() ? bias.contiguous() : at::Tensor();
  at::Tensor out = at::empty({x.size(0), n, x.size(2), x.size(3)}, x.options().memory_format(kChannelsLast));
  const norm_gemm::Args args{p.data, p.ld, p.channels, scale.data_ptr<float>(), shift.data_ptr<float>(),
                            packed.data(), n, b.defined() ? b.data_ptr<float>() : nullptr, relu,
                            out.data_ptr<float>(), n};
  parallel_chunks(0, p.rows, fused_kernels::kRowGrain, [&](int64_t begin, int64_t end) { norm_gemm::rows(args, begin, end); });
  return out;
}

// batch_norm(x) as x * scale + shift: invstd = 1 / sqrt(var + eps), scale = gamma * invstd,
// shift = beta - mean * scale.
struct NormAffine {
  at::Tensor scale, shift, invstd;
};
NormAffine affine(const at::Tensor& weight, const at::Tensor& bias, const at::Tensor& mean, const at::Tensor& var,
                  double eps) {
  at::Tensor invstd = (var + eps).rsqrt();
  at::Tensor scale = (weight * invstd).contiguous();
  return {scale, (bias - mean * scale).contiguous(), invstd};
}

// The storage a block's normalised layer inputs share (count x (total - k) floats), made on
// first use: layers whose 1x1 convolution norm_gemm runs never write their normalised input.
class SharedStorage {
 public:
  SharedStorage(int64_t numel, at::TensorOptions options) : numel_(numel), options_(options) {}
  // relu(batch_norm(x)) into a view of the storage (see normalized).
  at::Tensor normalized(const at::Tensor& x, const NormAffine& a) {
    if (!storage_.defined()) storage_ = at::empty({numel_}, options_);
    return densetorch::normalized(x, a.scale, a.shift, storage_);
  }

 private:
  int64_t numel_;
  at::TensorOptions options_;
  at::Tensor storage_;
};

// BatchNorm2d's running averages from batch statistics over `count` values per channel.
void update_running(const NormArgs& n, const at::Tensor& mean, const at::Tensor& var, int64_t count) {
  const double m = n.momentum;
  n.running_mean.mul_(1 - m).add_(mean, m);
  n.running_var.mul_(1 - m).add_(var, m * static_cast<double>(count) / static_cast<double>(count - 1));
}

// Batch norm's parameter gradients and the affine part of its input gradient,
// k1 * (x - mean) + k0, from the sums of norm_relu_grad_rows over `count` values per channel.
struct NormGradTerms {
  at::Tensor grad_weight, grad_bias, k1, k0;
};
NormGradTerms norm_grad_terms(const std::pair<std::vector<double>, std::vector<double>>& sums, const at::Tensor& scale,
                              const at::Tensor& invstd, int64_t count) {
  // gx = scale * (gy - mean(gy) - xhat * mean(gy * xhat)), xhat = (x - mean) * invstd
  at::Tensor grad_bias = fused_kernels::float_vector(sums.first);
  at::Tensor grad_weight = fused_kernels::float_vector(sums.second) * invstd;
  const double n = static_cast<double>(count);
  at::Tensor k1 = (-scale * grad_weight * invstd / n).contiguous();
  at::Tensor k0 = (-scale * grad_bias / n).contiguous();
  return {grad_weight, grad_bias, k1, k0};
}

// gx += k1 * (x - mean) + k0 over the panels' rows, in parallel (x float32 or bfloat16).
void affine_add(const at::Tensor& x, const Panel& gx, const float* mean, const float* k1, const float* k0) {
  fused_kernels::visit_panel(x, [&](const auto& xp) {
    fused_kernels::with_width(xp.channels, [&](auto C) {
      fused_kernels::over_rows(xp.rows, [&](int64_t r0, int64_t r1) {
        fused_kernels::affine_add_rows(xp.data + r0 * xp.ld, xp.ld, gx.data + r0 * gx.ld, gx.ld, r1 - r0, C, mean, k1,
                                       k0);
      });
    });
  });
}

// g + k1 * (x - mean) + k0 over the panels' rows, in parallel, into a new dense channels-last
// tensor of `dtype` (float32, or bfloat16 for a bfloat16 convolution's backward).
at::Tensor affine_into(const at::Tensor& x, const Panel& g, const float* mean, const float* k1, const float* k0,
                       at::ScalarType dtype) {
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(dtype).memory_format(kChannelsLast));
  fused_kernels::visit_panel(x, [&](const auto& xp) {
    fused_kernels::visit_panel(out, [&](const auto& o) {
#ifdef DT_AVX512_PASSES
      if constexpr (std::is_same_v<decltype(o), const PanelOf<uint16_t>&>) {
        if (fused_kernels::use_avx512())
          return fused_kernels::over_rows(xp.rows, [&](int64_t r0, int64_t r1) {
            fused_kernels::avx512::affine_add_into_rows(xp.data + r0 * xp.ld, xp.ld, g.data + r0 * g.ld, g.ld,
                                                        o.data + r0 * o.ld, o.ld, r1 - r0, xp.channels, mean, k1, k0);
          });
      }
#endif
      fused_kernels::with_width(xp.channels, [&](auto C) {
        fused_kernels::over_rows(xp.rows, [&](int64_t r0, int64_t r1) {
          fused_kernels::affine_add_into_rows(xp.data + r0 * xp.ld, xp.ld, g.data + r0 * g.ld, g.ld, o.data + r0 * o.ld,
                                              o.ld, r1 - r0, C, mean, k1, k0);
        });
      });
    });
  });
  return out;
}

// One pass of norm_relu_grad_rows over the panels' rows, in parallel; returns the sums.
template <bool kAccumulate, class G, class X>
std::pair<std::vector<double>, std::vector<double>> norm_relu_grad(const PanelOf<G>& g, const PanelOf<X>& x,
                                                                   const Panel& gx, const at::Tensor& scale,
                                                                   const at::Tensor& shift, const at::Tensor& mean) {
  const float *s = scale.data_ptr<float>(), *t = shift.data_ptr<float>(), *m = mean.data_ptr<float>();
  return fused_kernels::sum_over_rows(x.rows, x.channels, [&](int64_t b, int64_t e, float* acc1, float* acc2) {
    fused_kernels::norm_relu_grad_rows<kAccumulate>(g.data + b * g.ld, g.ld, x.data + b * x.ld, x.ld,
                                                    gx.data + b * gx.ld, gx.ld, e - b, x.channels, s, t, m, acc1, acc2);
  });
}

// The same for channels-last float32 or bfloat16 tensors: the gradient g (a bfloat16
// convolution's input gradient under autocast) and the input x (a bfloat16 block buffer).
template <bool kAccumulate>
std::pair<std::vector<double>, std::vector<double>> norm_relu_grad(const at::Tensor& g, const at::Tensor& x,
                                                                   const Panel& gx, const at::Tensor& scale,
                                                                   const at::Tensor& shift, const at::Tensor& mean) {
  return fused_kernels::visit_panel(g, [&](const auto& gp) {
    return fused_kernels::visit_panel(
        x, [&](const auto& xp) { return norm_relu_grad<kAccumulate>(gp, xp, gx, scale, shift, mean); });
  });
}

int64_t pixels(const at::Tensor& x) { return x.size(0) * x.size(2) * x.size(3); }

// Completes batch norm's backward from the sums of a norm_relu_grad pass over x (gx written, not
// accumulated): adds the affine term to gx, returns the gradients of gamma and beta.
std::pair<at::Tensor, at::Tensor> finish_norm_backward(const std::pair<std::vector<double>, std::vector<double>>& sums,
                                                       const at::Tensor& x, const Panel& gx, const NormAffine& a,
                                                       const at::Tensor& mean) {
  const NormGradTerms terms = norm_grad_terms(sums, a.scale, a.invstd, pixels(x));
  affine_add(x, gx, mean.data_ptr<float>(), terms.k1.data_ptr<float>(), terms.k0.data_ptr<float>());
  return {terms.grad_weight, terms.grad_bias};
}

// Backward of relu(batch_norm(x)) with batch statistics (mean and the affine form of the
// forward): returns the gradients of gamma and beta, and that of x in `dtype`: in place in gx
// (float32), or a new tensor (bfloat16: the input gradient a bfloat16 convolution's backward
// reads, written so by the last pass instead of converted after it).
struct NormReluGrads {
  at::Tensor grad_weight, grad_bias, grad_x;
};
NormReluGrads norm_relu_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& gx,
                                 const NormAffine& a, const at::Tensor& mean, at::ScalarType dtype) {
  const Panel g = panel_of(gx);
  const auto sums = norm_relu_grad<false>(grad.contiguous(kChannelsLast), x, g, a.scale, a.shift, mean);
  const NormGradTerms terms = norm_grad_terms(sums, a.scale, a.invstd, pixels(x));
  const float *m = mean.data_ptr<float>(), *k1 = terms.k1.data_ptr<float>(), *k0 = terms.k0.data_ptr<float>();
  if (dtype != at::kFloat) return {terms.grad_weight, terms.grad_bias, affine_into(x, g, m, k1, k0, dtype)};
  affine_add(x, g, m, k1, k0);  // as finish_norm_backward
  return {terms.grad_weight, terms.grad_bias, gx};
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
  const int64_t chunks = fused_kernels::row_chunks(x.rows);
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

// Training-mode batch norm of a whole panel: its batch statistics (running statistics updated as
// BatchNorm2d does) and the affine form x * scale + shift.
struct BatchStats {
  at::Tensor mean, var;
  NormAffine a;
};
BatchStats batch_norm_of(const at::Tensor& x, const NormArgs& norm) {
  auto [mean, var] = fused_kernels::channel_stats(x);
  update_running(norm, mean, var, pixels(x));
  const NormAffine a = affine(norm.weight, norm.bias, mean, var, norm.eps);
  return {mean, var, a};
}

// What backward needs from forward (training only).
struct BlockState {
  at::Tensor mean, var;  // batch statistics of every channel of the block, [C0 + L*k]
  std::vector<at::Tensor> y1, mean2, var2;  // bottleneck layers: conv1's output (compute dtype) and its statistics
  bool memory_efficient = false;  // y1 of narrow layers left undefined: backward recomputes it
};

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
at::Tensor conv3x3_weight_grad(const at::Tensor& grad, const at::Tensor& x) {
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
      norm_gemm::conv3x3_weight_grad_rows(gp.data(), n, xp.data(), c, row, 0, grid, gw);
    }
  });
  // [9][n][c] (tap-major) -> [n][c][3][3], laid out channels-last as the weight's gradient is.
  return partial.sum(0).view({3, 3, n, c}).permute({2, 3, 0, 1}).contiguous(kChannelsLast);
}

// A float32 3x3 convolution with padding 1 (stride 1): the kind densetorch's own 3x3 kernels compute.
bool float_conv3x3(at::ScalarType compute, const at::Tensor& weight, int64_t padding) {
  return compute == at::kFloat && padding == 1 && weight.size(2) == 3 && weight.size(3) == 3;
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
  return H * W >= (forward ? 64 : 2) &&
         (forward ? norm_gemm::winograd_available(c, k) : norm_gemm::winograd_available(k, c));
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
  std::vector<float> packed(static_cast<std::size_t>(norm_gemm::winograd_size(c, k)));
  norm_gemm::pack_winograd_weight(w.data_ptr<float>(), k, c, packed.data());
  const norm_gemm::WinogradArgs args{{in.data, in.ld, N, H, W, c, scale.defined() ? scale.data_ptr<float>() : nullptr,
                                      shift.defined() ? shift.data_ptr<float>() : nullptr},
                                     packed.data(), k, out.data, out.ld};
  parallel_chunks(0, norm_gemm::winograd_tile_count(N, H, W), 12,
                  [&](int64_t begin, int64_t end) { norm_gemm::winograd_tiles(args, begin, end); });
}

// The weight gradient of a float32 3x3 convolution (stride 1, padding 1) from grad and x
// through norm_gemm's Winograd kernel: each thread sums its tiles' products into 16 matrices of
// (about) n x c of its own; the sum over threads is transformed back to [n, c, 3, 3] once.
at::Tensor conv3x3_winograd_weight_grad(const at::Tensor& grad, const at::Tensor& x) {
  const at::Tensor xs = x.to(at::kFloat).contiguous(kChannelsLast);
  const at::Tensor gs = grad.to(at::kFloat).contiguous(kChannelsLast);
  const Panel in = panel_of(xs), g = panel_of(gs);
  const int64_t N = x.size(0), c = x.size(1), H = x.size(2), W = x.size(3), n = grad.size(1);
  const int64_t size = norm_gemm::winograd_size(c, n);
  at::Tensor partial = at::zeros({at::get_num_threads(), size}, at::kFloat);
  float* pu = partial.data_ptr<float>();
  const norm_gemm::WinogradGradArgs args{{in.data, in.ld, N, H, W, c, nullptr, nullptr}, g.data, g.ld, n};
  at::parallel_for(0, norm_gemm::winograd_tile_count(N, H, W), 12, [&](int64_t begin, int64_t end) {
    norm_gemm::winograd_weight_grad_tiles(args, begin, end, pu + at::get_thread_num() * size);
  });
  const at::Tensor u = partial.sum(0).contiguous();
  at::Tensor grad_weight = at::empty({n, c, 3, 3}, at::kFloat);
  norm_gemm::winograd_weight_grad_finish(u.data_ptr<float>(), n, c, grad_weight.data_ptr<float>());
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
                               (float_conv3x3(compute, weight, padding) && H * W >= 64 &&
                                norm_gemm::conv3x3_weight_grad_available(weight.size(0), weight.size(1)));
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

// The block's forward; `state` (training only) receives what backward needs, or is null.
at::Tensor block_forward(const at::Tensor& x_in, const std::vector<FusedLayerArgs>& layers, int64_t k, bool training,
                         at::ScalarType compute, BlockState* state) {
  const at::Tensor x = x_in.contiguous(kChannelsLast);
  const int64_t N = x.size(0), C0 = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t total = C0 + static_cast<int64_t>(layers.size()) * k;
  const int64_t count = N * H * W;
  at::Tensor buffer = at::empty({N, total, H, W}, x.options().dtype(compute).memory_format(kChannelsLast));
  buffer.narrow(1, 0, C0).copy_(x);
  at::Tensor mean, var;
  if (training) {
    mean = at::empty({total}, at::kFloat);
    var = at::empty({total}, at::kFloat);
    auto [m, v] = fused_kernels::channel_stats(buffer.narrow(1, 0, C0));
    mean.narrow(0, 0, C0).copy_(m);
    var.narrow(0, 0, C0).copy_(v);
  }
  // The normalised inputs of every layer share one allocation (backward recomputes them), and so
  // do the normalised bottleneck outputs.
  SharedStorage storage1(count * (total - k), x.options().dtype(compute));
  const bool bottleneck_training = training && !layers.empty() && layers[0].norm2.has_value();
  const at::Tensor storage2 =
      bottleneck_training ? at::empty({count * layers[0].conv1_weight.size(0)}, x.options().dtype(compute))
                          : at::Tensor();
  int64_t channels = C0;
  for (const auto& layer : layers) {
    const at::Tensor features = buffer.narrow(1, 0, channels);
    NormAffine a1;
    if (training) {
      const at::Tensor m = mean.narrow(0, 0, channels), v = var.narrow(0, 0, channels);
      update_running(layer.norm1, m, v, count);
      a1 = affine(layer.norm1.weight, layer.norm1.bias, m, v, layer.norm1.eps);
    } else {
      a1 = affine(layer.norm1.weight, layer.norm1.bias, layer.norm1.running_mean, layer.norm1.running_var,
                  layer.norm1.eps);
    }
    // The layer's k new channels: the 3x3 convolution writes them into the buffer itself when it
    // runs through the Winograd kernel (then `out` stays undefined).
    const at::Tensor added = buffer.narrow(1, channels, k);
    at::Tensor out;
    if (!layer.norm2) {
      if (winograd_runs(compute, layer.conv1_weight, layer.padding1, H, W, /*forward=*/true))
        conv3x3_winograd(features, a1.scale, a1.shift, layer.conv1_weight, added);
      else
        out = conv(compute, storage1.normalized(features, a1), layer.conv1_weight, {}, layer.padding1);
    } else if (!training) {
      const FoldedConv folded = fold_norm_into_conv(layer.conv1_weight, *layer.norm2);
      at::Tensor y1 =
          norm_relu_conv1x1(compute, features, a1.scale, a1.shift, folded.weight, folded.bias, /*relu=*/true);
      if (!y1.defined())
        y1 = conv(compute, storage1.normalized(features, a1), folded.weight, folded.bias, 0).relu_();
      if (winograd_runs(compute, layer.conv2_weight, 1, H, W, /*forward=*/true))
        conv3x3_winograd(y1.contiguous(kChannelsLast), {}, {}, layer.conv2_weight, added);
      else
        out = conv(compute, y1, layer.conv2_weight, {}, 1);
    } else {
      const NormArgs& n2 = *layer.norm2;
      at::Tensor y1 =
          norm_relu_conv1x1(compute, features, a1.scale, a1.shift, layer.conv1_weight, {}, /*relu=*/false);
      if (!y1.defined())
        y1 = conv(compute, storage1.normalized(features, a1), layer.conv1_weight, {}, 0).contiguous(kChannelsLast);
      auto [m2, v2] = fused_kernels::channel_stats(y1);
      update_running(n2, m2, v2, count);
      const NormAffine a2 = affine(n2.weight, n2.bias, m2, v2, n2.eps);
      // Batch norm + ReLU inside the Winograd kernel's input transform.
      if (winograd_runs(compute, layer.conv2_weight, 1, H, W, /*forward=*/true))
        conv3x3_winograd(y1, a2.scale, a2.shift, layer.conv2_weight, added);
      else
        out = conv(compute, normalized(y1, a2.scale, a2.shift, storage2), layer.conv2_weight, {}, 1);
      if (state) {
        const bool keep = !state->memory_efficient || keeps_bottleneck_when_efficient(channels, k);
        state->y1.push_back(keep ? y1 : at::Tensor());
        state->mean2.push_back(m2);
        state->var2.push_back(v2);
      }
    }
    auto [m, v] = out.defined() ? fused_kernels::append_features(out.contiguous(kChannelsLast), added, training)
                  : training      ? fused_kernels::channel_stats(added)
                                  : std::pair<at::Tensor, at::Tensor>();
    if (training) {
      mean.narrow(0, channels, k).copy_(m);
      var.narrow(0, channels, k).copy_(v);
    }
    channels += k;
  }
  if (state) {
    state->mean = mean;
    state->var = var;
  }
  return buffer;
}

// Non-tensor arguments of the autograd function.
struct BlockSettings {
  int64_t growth_rate;
  bool memory_efficient;
  at::ScalarType compute;  // compute_dtype() in forward
  bool bottleneck;
  std::vector<int64_t> padding1;
  std::vector<double> momentum1, eps1, momentum2, eps2;
};

constexpr std::size_t kParamsPerLayer = 3;  // norm weight, norm bias, conv weight (per norm/conv pair)
constexpr std::size_t kRunningPerNorm = 2;  // running mean, running var

// Rebuilds the layers from the flat lists the autograd function receives: params per layer
// [norm1 weight, bias, conv1 weight (, norm2 weight, bias, conv2 weight)], running per layer
// [norm1 mean, var (, norm2 mean, var)].
std::vector<FusedLayerArgs> unflatten(at::TensorList params, at::TensorList running, const BlockSettings& s) {
  const std::size_t pairs = s.bottleneck ? 2 : 1;
  std::vector<FusedLayerArgs> layers(s.padding1.size());
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const at::Tensor* p = params.data() + i * pairs * kParamsPerLayer;
    const at::Tensor* r = running.data() + i * pairs * kRunningPerNorm;
    auto& l = layers[i];
    l.norm1 = {p[0], p[1], r[0], r[1], s.momentum1[i], s.eps1[i]};
    l.conv1_weight = p[2];
    l.padding1 = s.padding1[i];
    if (s.bottleneck) {
      l.norm2 = NormArgs{p[3], p[4], r[2], r[3], s.momentum2[i], s.eps2[i]};
      l.conv2_weight = p[5];
    }
  }
  return layers;
}

std::vector<at::Tensor> take(AutogradContext* ctx, const char* key) {
  auto it = ctx->saved_data.find(key);
  if (it == ctx->saved_data.end())
    throw std::runtime_error(
        "Trying to backward through a fused dense block a second time: its saved tensors were freed by the first "
        "backward (retain_graph is not supported by the fused block; DENSETORCH_FUSED=0 turns it off)");
  std::vector<at::Tensor> v = it->second.toTensorVector();
  ctx->saved_data.erase(it);
  return v;
}

// The part of batch norm's input gradient that is affine in x per channel, summed over every
// layer that normalises a channel: gx += k1 * (x - mean) + k0 (see norm_relu_grad_accumulate_rows).
struct DeferredAffine {
  at::Tensor k1, k0;  // [C0 + L*k]

  // Adds one layer's terms for its first `channels` channels, from the sums of its gradient;
  // returns its norm's weight and bias gradients.
  std::pair<at::Tensor, at::Tensor> add(int64_t channels, const std::pair<std::vector<double>, std::vector<double>>& sums,
                                        const at::Tensor& scale, const at::Tensor& invstd, int64_t count) {
    NormGradTerms terms = norm_grad_terms(sums, scale, invstd, count);
    k1.narrow(0, 0, channels).add_(terms.k1);
    k0.narrow(0, 0, channels).add_(terms.k0);
    return {terms.grad_weight, terms.grad_bias};
  }

  // The complete gradient of channels [first, first + C) of the buffer x, once no layer that
  // reads them is left: grad (their slice of the gradient buffer) plus the affine terms, as a new
  // dense channels-last tensor of `dtype` (float32, or bfloat16 for a bfloat16 convolution's
  // backward): one pass, the slice itself is not read again.
  at::Tensor complete(const at::Tensor& x, const at::Tensor& grad, const at::Tensor& mean, int64_t first,
                      at::ScalarType dtype) const {
    return affine_into(x, panel_of(grad), mean.data_ptr<float>() + first, k1.data_ptr<float>() + first,
                       k0.data_ptr<float>() + first, dtype);
  }
};

struct FusedBlockFunction : public torch::autograd::Function<FusedBlockFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, at::TensorList params, at::TensorList running,
                            const BlockSettings& s) {
    BlockState state;
    state.memory_efficient = s.memory_efficient;
    at::Tensor out =
        block_forward(x, unflatten(params, running, s), s.growth_rate, /*training=*/true, s.compute, &state);
    variable_list saved(params.begin(), params.end());
    saved.push_back(out);
    ctx->save_for_backward(saved);
    ctx->saved_data["c0"] = x.size(1);
    ctx->saved_data["input_dtype"] = static_cast<int64_t>(x.scalar_type());
    ctx->saved_data["stats"] = std::vector<at::Tensor>{state.mean, state.var};
    ctx->saved_data["y1"] = state.y1;
    ctx->saved_data["mean2"] = state.mean2;
    ctx->saved_data["var2"] = state.var2;
    ctx->saved_data["growth_rate"] = s.growth_rate;
    ctx->saved_data["compute"] = static_cast<int64_t>(s.compute);
    ctx->saved_data["bottleneck"] = s.bottleneck;
    ctx->saved_data["padding1"] = s.padding1;
    ctx->saved_data["eps1"] = s.eps1;
    ctx->saved_data["eps2"] = s.eps2;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const bool bottleneck = ctx->saved_data["bottleneck"].toBool();
    const std::vector<int64_t> padding1 = ctx->saved_data["padding1"].toIntVector();
    const std::vector<double> eps1 = ctx->saved_data["eps1"].toDoubleVector();
    const std::vector<double> eps2 = ctx->saved_data["eps2"].toDoubleVector();
    const int64_t c0 = ctx->saved_data["c0"].toInt();
    const int64_t k = ctx->saved_data["growth_rate"].toInt();
    const auto compute = static_cast<at::ScalarType>(ctx->saved_data["compute"].toInt());
    const std::vector<at::Tensor> stats = take(ctx, "stats");
    std::vector<at::Tensor> y1 = take(ctx, "y1"), mean2 = take(ctx, "mean2"), var2 = take(ctx, "var2");
    const at::Tensor& buffer = saved.back();
    const at::Tensor& mean = stats[0];
    const at::Tensor& var = stats[1];
    const std::size_t pairs = bottleneck ? 2 : 1;
    const std::size_t L = padding1.size();
    const int64_t count = pixels(buffer);

    // Reused by every layer (see view_of): the recomputed normalised inputs, and for bottleneck
    // layers the normalised bottleneck output and its gradient.
    SharedStorage storage1(count * (buffer.size(1) - k), buffer.options().dtype(compute));
    const int64_t bottleneck_size = bottleneck ? count * saved[2].size(0) : 0;  // conv1's output channels
    const at::Tensor storage2 = bottleneck ? at::empty({bottleneck_size}, buffer.options().dtype(compute)) : at::Tensor();
    const at::TensorOptions grad_options = buffer.options().dtype(at::kFloat);  // gradients stay float32
    const at::Tensor storage_grad2 = bottleneck ? at::empty({bottleneck_size}, grad_options) : at::Tensor();
    at::Tensor grad_buffer = at::empty(buffer.sizes(), grad_options.memory_format(kChannelsLast));
    grad_buffer.copy_(grad_outputs[0]);
    DeferredAffine deferred{at::zeros({buffer.size(1)}, at::kFloat), at::zeros({buffer.size(1)}, at::kFloat)};
    variable_list param_grads(saved.size() - 1);
    for (std::size_t j = L; j-- > 0;) {
      const int64_t channels = c0 + static_cast<int64_t>(j) * k;
      const at::Tensor* p = saved.data() + j * pairs * kParamsPerLayer;
      at::Tensor* gp = param_grads.data() + j * pairs * kParamsPerLayer;
      // Every layer that reads this layer's k channels is done: complete their gradient.
      at::Tensor grad =
          deferred.complete(buffer.narrow(1, channels, k), grad_buffer.narrow(1, channels, k), mean, channels, compute);
      const at::Tensor features = buffer.narrow(1, 0, channels);
      const Panel grad_features = panel_of(grad_buffer.narrow(1, 0, channels));
      const at::Tensor m = mean.narrow(0, 0, channels);
      const NormAffine a1 = affine(p[0], p[1], m, var.narrow(0, 0, channels), eps1[j]);
      at::Tensor n1;
      // conv1 is 1x1 in a bottleneck layer: norm_gemm's kernels run its forward and backward with
      // batch norm + ReLU inside, when the CPU has them (float32).
      const bool norm_gemm_conv1 = bottleneck && norm_gemm_runs(compute, p[2]);
      if (bottleneck) {
        if (!y1[j].defined() && norm_gemm_conv1) {  // recompute conv1's output
          y1[j] = norm_relu_conv1x1(compute, features, a1.scale, a1.shift, p[2], {}, /*relu=*/false);
        } else if (!y1[j].defined()) {  // its normalised input is needed for conv1's backward anyway
          n1 = storage1.normalized(features, a1);
          y1[j] = conv(compute, n1, p[2], {}, padding1[j]).contiguous(kChannelsLast);
        }
        const NormAffine a2 = affine(p[3], p[4], mean2[j], var2[j], eps2[j]);
        at::Tensor n2 = normalized(y1[j], a2.scale, a2.shift, storage2);
        auto [g_n2, g_w2] = conv_backward(compute, grad, n2, p[5], 1);
        n2.reset();
        gp[5] = g_w2;
        NormReluGrads g2 = norm_relu_backward(g_n2, y1[j], view_of(storage_grad2, y1[j]), a2, mean2[j], compute);
        gp[3] = g2.grad_weight;
        gp[4] = g2.grad_bias;
        grad = std::move(g2.grad_x);
        y1[j].reset();
      }
      if (norm_gemm_conv1) {
        auto [grad_weight, sums] = norm_relu_conv1x1_backward(grad, panel_of(features), grad_features, a1, m, p[2]);
        grad.reset();
        gp[2] = grad_weight;
        std::tie(gp[0], gp[1]) = deferred.add(channels, sums, a1.scale, a1.invstd, count);
        continue;
      }
      if (!n1.defined()) n1 = storage1.normalized(features, a1);
      auto [g_n1, g_w1] = conv_backward(compute, grad, n1, p[2], padding1[j]);
      n1.reset();
      grad.reset();
      gp[2] = g_w1;
      const at::Tensor g_cl = g_n1.contiguous(kChannelsLast);
      g_n1.reset();
      std::tie(gp[0], gp[1]) = deferred.add(
          channels, norm_relu_grad<true>(g_cl, features, grad_features, a1.scale, a1.shift, m), a1.scale,
          a1.invstd, count);
    }
    variable_list grads{at::Tensor()};
    if (ctx->needs_input_grad(0)) {
      grads[0] = deferred.complete(buffer.narrow(1, 0, c0), grad_buffer.narrow(1, 0, c0), mean, 0,
                                   static_cast<at::ScalarType>(ctx->saved_data["input_dtype"].toInt()));
    }
    grads.insert(grads.end(), param_grads.begin(), param_grads.end());
    grads.resize(grads.size() + L * pairs * kRunningPerNorm + 1);  // running statistics, settings
    return grads;
  }
};

// conv1x1(avg_pool2d(relu(batch_norm(x)), 2, 2)) in training mode: one pass for the statistics,
// one for BN + ReLU + pooling, the convolution on the pooled map; backward is the convolution's
// backward and one pass for pooling + ReLU + batch norm (plus the affine term). Saves x (the
// block's buffer, alive anyway), the statistics and, with keep_pooled, the pooled map (a quarter
// of x; without it backward pools again).
struct FusedTransitionFunction : public torch::autograd::Function<FusedTransitionFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& norm_weight,
                            const at::Tensor& norm_bias, const at::Tensor& running_mean, const at::Tensor& running_var,
                            const at::Tensor& conv_weight, double momentum, double eps, bool keep_pooled) {
    const at::Tensor x = x_in.contiguous(kChannelsLast);
    const BatchStats bn = batch_norm_of(x, {norm_weight, norm_bias, running_mean, running_var, momentum, eps});
    at::Tensor pooled = fused_kernels::norm_relu_pool2(x, bn.a.scale, bn.a.shift);
    const at::ScalarType compute = compute_dtype();
    at::Tensor out = conv(compute, pooled, conv_weight, {}, 0);
    ctx->save_for_backward({x, norm_weight, norm_bias, conv_weight, keep_pooled ? pooled : at::Tensor()});
    ctx->saved_data["stats"] = std::vector<at::Tensor>{bn.mean, bn.var};
    ctx->saved_data["compute"] = static_cast<int64_t>(compute);
    ctx->saved_data["eps"] = eps;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &norm_weight = saved[1], &norm_bias = saved[2], &conv_weight = saved[3];
    const std::vector<at::Tensor> stats = take(ctx, "stats");
    const NormAffine a = affine(norm_weight, norm_bias, stats[0], stats[1], ctx->saved_data["eps"].toDouble());
    at::Tensor pooled = saved[4].defined() ? saved[4] : fused_kernels::norm_relu_pool2(x, a.scale, a.shift);
    auto [g_pooled, g_conv] = conv_backward(static_cast<at::ScalarType>(ctx->saved_data["compute"].toInt()),
                                            grad_outputs[0].contiguous(kChannelsLast), pooled, conv_weight, 0);
    pooled.reset();
    const at::Tensor gp = g_pooled.to(at::kFloat).mul(0.25).contiguous(kChannelsLast);  // the window's weight
    g_pooled.reset();
    at::Tensor gx = at::empty(x.sizes(), x.options().dtype(at::kFloat).memory_format(kChannelsLast));
    auto [grad_weight, grad_bias] = finish_norm_backward(
        fused_kernels::norm_relu_pool2_grad(x, gp, gx, a.scale, a.shift, stats[0]), x, panel_of(gx), a, stats[0]);
    // x, norm weight, norm bias, running mean, running var, conv weight, momentum, eps, keep_pooled
    return {gx.to(x.scalar_type()), grad_weight, grad_bias, {}, {}, g_conv, {}, {}, {}};
  }
};

// max_pool2d(relu(batch_norm(x)), 3, 2, 1) in training mode (the ImageNet stem after conv0): one
// pass for the statistics, one for BN + ReLU + pooling; saves x (conv0's output, which batch norm's
// backward needs anyway; bfloat16 under autocast, as conv0 made it) and the statistics: neither
// the normalised map nor the pooling's indices are kept. Backward routes the gradient to each
// window's maximum (recomputed), then batch norm + ReLU backward in one pass.
struct FusedStemFunction : public torch::autograd::Function<FusedStemFunction> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x_in, const at::Tensor& norm_weight,
                            const at::Tensor& norm_bias, const at::Tensor& running_mean, const at::Tensor& running_var,
                            double momentum, double eps) {
    const at::Tensor x = x_in.contiguous(kChannelsLast);
    const BatchStats bn = batch_norm_of(x, {norm_weight, norm_bias, running_mean, running_var, momentum, eps});
    ctx->save_for_backward({x, norm_weight, norm_bias});
    ctx->saved_data["stats"] = std::vector<at::Tensor>{bn.mean, bn.var};
    ctx->saved_data["eps"] = eps;
    return fused_kernels::norm_relu_maxpool(x, bn.a.scale, bn.a.shift);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const std::vector<at::Tensor> stats = take(ctx, "stats");
    const NormAffine a = affine(saved[1], saved[2], stats[0], stats[1], ctx->saved_data["eps"].toDouble());
    const at::TensorOptions grad_options = x.options().dtype(at::kFloat).memory_format(kChannelsLast);
    at::Tensor gz = at::empty(x.sizes(), grad_options);
    fused_kernels::norm_relu_maxpool_grad(x, grad_outputs[0].to(at::kFloat).contiguous(kChannelsLast), gz, a.scale,
                                          a.shift);
    at::Tensor gx = at::empty(x.sizes(), grad_options);
    const Panel gxp = panel_of(gx);
    const auto sums = norm_relu_grad<false>(gz, x, gxp, a.scale, a.shift, stats[0]);
    gz.reset();
    auto [grad_weight, grad_bias] = finish_norm_backward(sums, x, gxp, a, stats[0]);
    // x, norm weight, norm bias, running mean, running var, momentum, eps
    return {gx.to(x.scalar_type()), grad_weight, grad_bias, {}, {}, {}, {}};
  }
};

}  // namespace

at::Tensor fused_norm_relu_maxpool(const at::Tensor& x, const NormArgs& norm, bool training) {
  // x: float32, or bfloat16 under autocast (read as it is; the pooled result is float32).
  if (training)
    return FusedStemFunction::apply(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.momentum,
                                    norm.eps);
  const NormAffine a = affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps);
  return fused_kernels::norm_relu_maxpool(x, a.scale, a.shift);
}

at::Tensor fused_transition(const at::Tensor& x, const NormArgs& norm, const at::Tensor& conv_weight,
                            bool keep_pooled) {
  return FusedTransitionFunction::apply(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, conv_weight,
                                        norm.momentum, norm.eps, keep_pooled);
}

at::Tensor norm_relu_pool2(const at::Tensor& x, const NormArgs& norm) {
  const NormAffine a = affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps);
  return fused_kernels::norm_relu_pool2(x, a.scale, a.shift);
}

FoldedConv fold_norm_into_conv(const at::Tensor& conv_weight, const NormArgs& norm) {
  const at::Tensor scale = norm.weight * (norm.running_var + norm.eps).rsqrt();
  return {conv_weight * scale.view({-1, 1, 1, 1}), norm.bias - norm.running_mean * scale};
}

bool keeps_bottleneck_when_efficient(int64_t in_channels, int64_t growth_rate) {
  // Keep when in_channels > threshold x k; "all" recomputes every layer's (no threshold).
  static const double threshold = [] {
    const char* v = std::getenv("DENSETORCH_RECOMPUTE");
    if (v == nullptr || *v == '\0') return kKeepBottleneckAbove;
    if (std::string(v) == "all") return std::numeric_limits<double>::infinity();
    char* end = nullptr;
    const double t = std::strtod(v, &end);
    TORCH_CHECK(*end == '\0' && t >= 0, "DENSETORCH_RECOMPUTE must be 'all' or a number of growth rates, got '", v, "'");
    return t;
  }();
  return static_cast<double>(in_channels) > threshold * static_cast<double>(growth_rate);
}

bool fused_blocks_enabled() {
  const int forced = fused_override.load();
  if (forced >= 0) return forced == 1;
  static const bool from_env = env_flag("DENSETORCH_FUSED", true);
  return from_env;
}

void set_fused_blocks(bool enabled) { fused_override.store(enabled ? 1 : 0); }

bool fused_block_supported(const at::Tensor& x, bool training, const at::Tensor& weight) {
  if (!fused_blocks_enabled() || !x.device().is_cpu() || x.dim() != 4 || weight.scalar_type() != at::kFloat ||
      (training && x.size(0) * x.size(2) * x.size(3) <= 1))
    return false;
  if (!at::autocast::is_autocast_enabled(at::kCPU)) return x.scalar_type() == at::kFloat;
  return at::autocast::get_autocast_dtype(at::kCPU) == at::kBFloat16 &&
         (x.scalar_type() == at::kFloat || x.scalar_type() == at::kBFloat16);
}

at::Tensor fused_dense_block(const at::Tensor& x, const std::vector<FusedLayerArgs>& layers, int64_t growth_rate,
                             bool training, bool memory_efficient) {
  // x: float32, or under autocast bfloat16 too (copied into the block's buffer of compute_dtype()).
  if (!training || !at::GradMode::is_enabled())
    return block_forward(x, layers, growth_rate, training, compute_dtype(), nullptr);
  BlockSettings s{growth_rate, memory_efficient, compute_dtype(), !layers.empty() && layers[0].norm2.has_value(), {}, {}, {}, {}, {}};
  std::vector<at::Tensor> params, running;
  for (const auto& l : layers) {
    s.padding1.push_back(l.padding1);
    s.momentum1.push_back(l.norm1.momentum);
    s.eps1.push_back(l.norm1.eps);
    params.insert(params.end(), {l.norm1.weight, l.norm1.bias, l.conv1_weight});
    running.insert(running.end(), {l.norm1.running_mean, l.norm1.running_var});
    if (s.bottleneck) {
      s.momentum2.push_back(l.norm2->momentum);
      s.eps2.push_back(l.norm2->eps);
      params.insert(params.end(), {l.norm2->weight, l.norm2->bias, l.conv2_weight});
      running.insert(running.end(), {l.norm2->running_mean, l.norm2->running_var});
    }
  }
  return FusedBlockFunction::apply(x, at::TensorList(params), at::TensorList(running), s);
}

}  // namespace densetorch
