// Image augmentation policies of modern recipes, as torchvision implements them for uint8 image
// tensors: TrivialAugmentWide and RandAugment (their 14 operations, magnitudes and draws), and
// RandomErasing on a normalised float image. One image at a time; draws come from the generator
// given (the data set's seeded one), in torchvision's order.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>

namespace densetorch {

enum class AugmentPolicy { kNone, kTrivialAugmentWide, kRandAugment };

// 'trivialaugment' | 'randaugment' | 'none'; throws std::invalid_argument otherwise.
AugmentPolicy parse_policy(const std::string& name);

// The operations, in the order of torchvision's augmentation space.
enum class AugmentOp {
  kIdentity, kShearX, kShearY, kTranslateX, kTranslateY, kRotate, kBrightness, kColor, kContrast, kSharpness,
  kPosterize, kSolarize, kAutoContrast, kEqualize
};
constexpr int64_t kAugmentOps = 14;

// One operation on a uint8 image [C, H, W] (C = 1 or 3) with torchvision's _apply_op semantics:
// nearest interpolation, zero fill; shear magnitude is the shear factor (atan to degrees),
// translation in pixels (truncated), rotation in degrees, the enhancements' factor is 1 +
// magnitude, posterize keeps int(magnitude) bits, solarize inverts pixels >= magnitude.
at::Tensor apply_augment_op(const at::Tensor& image, AugmentOp op, double magnitude);

// The policy on one uint8 image [C, H, W]: TrivialAugmentWide (one uniform op, a uniform one of
// 31 magnitude bins, a random sign for signed ops) or RandAugment (2 uniform ops at bin 9 of 31,
// random signs).
at::Tensor apply_policy(const at::Tensor& image, AugmentPolicy policy, at::Generator& gen);

// torchvision's RandomErasing(p, scale=(0.02, 0.33), ratio=(0.3, 3.3), value=0) on one float
// image [C, H, W] (after normalisation), in place.
void random_erasing(at::Tensor& image, double p, at::Generator& gen);

}  // namespace densetorch
