// A channels-last activation seen as rows of pixels: what the per-pixel passes (norm_passes.h)
// and the GEMM kernels' callers read and write.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace densetorch::kernels {

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

}  // namespace densetorch::kernels
