// The hardware limits a DenseNet step is measured against (benchmarks only, not part of the addon;
// bench/native/roofline_main.cpp is the program bench/densetorch_case.js runs): the model's
// convolution shapes and FLOPs, the FMA peak, the sgemm ceiling, and the conv-only floor (every convolution of
// the model timed alone on its own input shape, channels-last, summed).
#pragma once

#include "../../native/core/densenet.h"

#include <cstdint>
#include <vector>

namespace densetorch {

struct ConvShape {
  int64_t in_channels, out_channels, kernel, stride, padding;
  int64_t height, width;  // of the input
  bool input_grad;        // false for the first convolution (the image needs no gradient)
  int64_t out_height() const { return (height + 2 * padding - kernel) / stride + 1; }
  int64_t out_width() const { return (width + 2 * padding - kernel) / stride + 1; }
  // 2 x multiply-adds of one image's forward pass.
  double flops() const {
    return 2.0 * static_cast<double>(in_channels * out_channels * kernel * kernel * out_height() * out_width());
  }
};

// Every convolution of the model on an input of height x width, in forward order; the classifier
// is the last entry, as a 1x1 convolution on a 1x1 map.
std::vector<ConvShape> conv_shapes(const DenseNetConfig& config, int64_t height, int64_t width);

// Forward FLOPs of one image (convolutions and classifier).
double forward_flops(const std::vector<ConvShape>& shapes);

// The arithmetic ceiling of these threads: float32 fused multiply-adds on registers only (no
// memory operands, 24 independent accumulators per thread, enough to cover the FMA latency on
// two ports), in the widest vectors the CPU has, every thread of LibTorch's pool running its own
// chains. GFLOP/s (an FMA counts 2) of the fastest of `reps` runs of about `seconds` each.
struct FmaPeak {
  double gflops;
  const char* isa;  // "avx512", "avx2" or "scalar"
};
FmaPeak fma_peak(double seconds, int reps);

// Median seconds of at::mm on two n x n float32 matrices over `reps` runs (after one warm-up).
double time_matmul(int64_t n, int reps);

// Sum over the shapes of each convolution's median seconds (batch `batch`, float32,
// channels-last, `reps` runs after one warm-up): forward only, or forward plus both backward
// convolutions (input gradient where input_grad, weight gradient) when `backward`.
double time_convolutions(const std::vector<ConvShape>& shapes, int64_t batch, bool backward, int reps);

}  // namespace densetorch
