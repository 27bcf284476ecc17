// The per-pixel passes of the fused dense block (norm_passes.h): batch statistics, batch norm +
// ReLU into a convolution's input, pooling, and their backward, over channels-last panels.
#include "norm_passes.h"

#include "cpu_capability.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

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

namespace densetorch::norm_passes {

using kernels::Panel;
using kernels::PanelOf;
using kernels::panel_of;


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

// Whether this process runs the avx512 passes above (DENSETORCH_CPU_CAPABILITY may lower it).
bool use_avx512() {
  static const bool yes = kernels::capability() >= kernels::Capability::kAvx512;
  return yes;
}
#endif

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

// gx += k1 * (x - mean) + k0 over the panels' rows, in parallel (x float32 or bfloat16).
void affine_add(const at::Tensor& x, const Panel& gx, const float* mean, const float* k1, const float* k0) {
  visit_panel(x, [&](const auto& xp) {
    with_width(xp.channels, [&](auto C) {
      over_rows(xp.rows, [&](int64_t r0, int64_t r1) {
        affine_add_rows(xp.data + r0 * xp.ld, xp.ld, gx.data + r0 * gx.ld, gx.ld, r1 - r0, C, mean, k1,
                                       k0);
      });
    });
  });
}

// g + k1 * (x - mean) + k0 over the panels' rows, in parallel, into a new dense channels-last
// tensor of `dtype` (float32, or bfloat16 for a bfloat16 convolution's backward).
at::Tensor affine_into(const at::Tensor& x, const Panel& g, const float* mean, const float* k1, const float* k0,
                       at::ScalarType dtype) {
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(dtype).memory_format(at::MemoryFormat::ChannelsLast));
  visit_panel(x, [&](const auto& xp) {
    visit_panel(out, [&](const auto& o) {
#ifdef DT_AVX512_PASSES
      if constexpr (std::is_same_v<decltype(o), const PanelOf<uint16_t>&>) {
        if (use_avx512())
          return over_rows(xp.rows, [&](int64_t r0, int64_t r1) {
            avx512::affine_add_into_rows(xp.data + r0 * xp.ld, xp.ld, g.data + r0 * g.ld, g.ld,
                                                        o.data + r0 * o.ld, o.ld, r1 - r0, xp.channels, mean, k1, k0);
          });
      }
#endif
      with_width(xp.channels, [&](auto C) {
        over_rows(xp.rows, [&](int64_t r0, int64_t r1) {
          affine_add_into_rows(xp.data + r0 * xp.ld, xp.ld, g.data + r0 * g.ld, g.ld, o.data + r0 * o.ld,
                                              o.ld, r1 - r0, C, mean, k1, k0);
        });
      });
    });
  });
  return out;
}

// One pass of norm_relu_grad_rows over the panels' rows, in parallel; returns the sums.
template <bool kAccumulate, class G, class X>
Sums norm_relu_grad_panels(const PanelOf<G>& g, const PanelOf<X>& x,
                                                                   const Panel& gx, const at::Tensor& scale,
                                                                   const at::Tensor& shift, const at::Tensor& mean) {
  const float *s = scale.data_ptr<float>(), *t = shift.data_ptr<float>(), *m = mean.data_ptr<float>();
  return sum_over_rows(x.rows, x.channels, [&](int64_t b, int64_t e, float* acc1, float* acc2) {
    norm_relu_grad_rows<kAccumulate>(g.data + b * g.ld, g.ld, x.data + b * x.ld, x.ld,
                                                    gx.data + b * gx.ld, gx.ld, e - b, x.channels, s, t, m, acc1, acc2);
  });
}

// The same for channels-last float32 or bfloat16 tensors: the gradient g (a bfloat16
// convolution's input gradient under autocast) and the input x (a bfloat16 block buffer).
Sums norm_relu_grad(const at::Tensor& g, const at::Tensor& x, const Panel& gx, const at::Tensor& scale,
                    const at::Tensor& shift, const at::Tensor& mean, bool accumulate) {
  return visit_panel(g, [&](const auto& gp) {
    return visit_panel(x, [&](const auto& xp) {
      return accumulate ? norm_relu_grad_panels<true>(gp, xp, gx, scale, shift, mean)
                        : norm_relu_grad_panels<false>(gp, xp, gx, scale, shift, mean);
    });
  });
}

}  // namespace densetorch::norm_passes

#undef DT_VECTOR_KERNEL
#undef DT_AVX512_PASSES
