// Opt-in lower precision for compute: autocast on the current thread. Convolutions and the
// classifier run in bfloat16 (CPUs with AVX-512 BF16/AMX, CUDA) or float16 (CUDA only), batch
// norm statistics and weights stay in float32.
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <stdexcept>
#include <string>

namespace densetorch {

enum class Precision { kFp32, kBf16, kFp16 };

// 'fp32', 'bf16' or 'fp16'; throws std::invalid_argument otherwise.
inline Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "bf16") return Precision::kBf16;
  if (name == "fp16") return Precision::kFp16;
  throw std::invalid_argument("precision must be 'fp32', 'bf16' or 'fp16', got '" + name + "'");
}

// While alive, ops on `device` issued by this thread run under autocast in `precision`
// (nothing changes for kFp32). Restores the previous autocast state on exit.
class PrecisionScope {
 public:
  PrecisionScope(Precision precision, const at::Device& device) : device_(device.type()) {
    if (precision == Precision::kFp32) return;
    if (precision == Precision::kFp16 && device_ != at::kCUDA)
      throw std::out_of_range("precision 'fp16' needs a CUDA model; use 'bf16' on the CPU");
    active_ = true;
    was_enabled_ = at::autocast::is_autocast_enabled(device_);
    previous_dtype_ = at::autocast::get_autocast_dtype(device_);
    at::autocast::set_autocast_enabled(device_, true);
    at::autocast::set_autocast_dtype(device_, precision == Precision::kBf16 ? at::kBFloat16 : at::kHalf);
    at::autocast::increment_nesting();
  }
  ~PrecisionScope() {
    if (!active_) return;
    if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
    at::autocast::set_autocast_enabled(device_, was_enabled_);
    at::autocast::set_autocast_dtype(device_, previous_dtype_);
  }
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  at::DeviceType device_;
  bool active_ = false;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

}  // namespace densetorch
