// Opt-in lower precision for compute: autocast on the current thread. Convolutions and the
// classifier run in bfloat16 (CPUs with AVX-512 BF16/AMX, CUDA) or float16 (CUDA only), batch
// norm statistics and weights stay in float32.
#pragma once

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>

#include <stdexcept>
#include <string>
#include <vector>

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

// Dynamic loss scaling for float16 training, as torch.amp.GradScaler does it: the loss is
// multiplied by the scale before backward, so that small gradients do not flush to zero in
// float16; the gradients are divided by it before the update. A step whose gradients hold an
// inf or NaN is skipped and the scale halved; after `growth_interval` clean steps in a row the
// scale doubles. The state lives on the gradients' device (one host sync per step, to decide).
class LossScaler {
 public:
  explicit LossScaler(const at::Device& device, double init_scale = 65536.0, int64_t growth_interval = 2000)
      : scale_(at::full({1}, init_scale, at::TensorOptions().dtype(at::kFloat).device(device))),
        growth_tracker_(at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(device))),
        found_inf_(at::zeros({1}, at::TensorOptions().dtype(at::kFloat).device(device))),
        growth_interval_(growth_interval) {}

  at::Tensor scale(const at::Tensor& loss) const { return loss * scale_; }

  // Divides every defined gradient of `params` by the scale; false when any of them holds an
  // inf or NaN (the caller then skips the step).
  bool unscale(const std::vector<at::Tensor>& params) {
    std::vector<at::Tensor> grads;
    grads.reserve(params.size());
    for (const auto& p : params)
      if (p.grad().defined()) grads.push_back(p.grad());
    found_inf_.zero_();
    if (!grads.empty()) at::_amp_foreach_non_finite_check_and_unscale_(grads, found_inf_, scale_.reciprocal());
    return found_inf_.item<float>() == 0.0f;
  }

  // After the step (taken or skipped): halves the scale after an overflow, doubles it after
  // growth_interval clean steps.
  void update() {
    at::_amp_update_scale_(scale_, growth_tracker_, found_inf_, /*scale_growth_factor=*/2.0,
                           /*scale_backoff_factor=*/0.5, growth_interval_);
  }

  double value() const { return scale_.item<double>(); }

 private:
  at::Tensor scale_, growth_tracker_, found_inf_;
  int64_t growth_interval_;
};

}  // namespace densetorch
