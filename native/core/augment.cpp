#include "augment.h"

#include "draws.h"

#include <array>
#include <cmath>
#include <numbers>
#include <stdexcept>

namespace densetorch {

namespace {

constexpr int64_t kBins = 31;  // num_magnitude_bins of both policies
constexpr int64_t kRandAugmentOps = 2, kRandAugmentBin = 9;

double radians(double degrees) { return degrees * std::numbers::pi / 180.0; }

// torchvision's _get_inverse_affine_matrix (center and translation in pixels from the image centre).
std::array<double, 6> inverse_affine(double cx, double cy, double angle, double tx, double ty, double shear_x, double shear_y) {
  const double rot = radians(angle), sx = radians(shear_x), sy = radians(shear_y);
  const double a = std::cos(rot - sy) / std::cos(sy);
  const double b = -std::cos(rot - sy) * std::tan(sx) / std::cos(sy) - std::sin(rot);
  const double c = std::sin(rot - sy) / std::cos(sy);
  const double d = -std::sin(rot - sy) * std::tan(sx) / std::cos(sy) + std::cos(rot);
  std::array<double, 6> m = {d, -b, 0.0, -c, a, 0.0};
  m[2] += m[0] * (-cx - tx) + m[1] * (-cy - ty);
  m[5] += m[3] * (-cx - tx) + m[4] * (-cy - ty);
  m[2] += cx;
  m[5] += cy;
  return m;
}

// torchvision's tensor affine: _gen_affine_grid, grid_sample (nearest, zeros), rounded back to uint8.
at::Tensor affine_nearest(const at::Tensor& img, const std::array<double, 6>& m) {
  const int64_t h = img.size(1), w = img.size(2);
  const auto f = at::TensorOptions().dtype(at::kFloat);
  const at::Tensor theta = at::tensor(std::vector<double>(m.begin(), m.end()), at::kDouble).to(at::kFloat).reshape({1, 2, 3});
  const double d = 0.5;
  at::Tensor base = at::empty({1, h, w, 3}, f);
  base.select(3, 0).copy_(at::linspace(-static_cast<double>(w) * 0.5 + d, static_cast<double>(w) * 0.5 + d - 1, w, f));
  base.select(3, 1).copy_(at::linspace(-static_cast<double>(h) * 0.5 + d, static_cast<double>(h) * 0.5 + d - 1, h, f).unsqueeze(-1));
  base.select(3, 2).fill_(1);
  const at::Tensor rescaled = theta.transpose(1, 2) / at::tensor({0.5 * static_cast<double>(w), 0.5 * static_cast<double>(h)}, f);
  const at::Tensor grid = base.view({1, h * w, 3}).bmm(rescaled).view({1, h, w, 2});
  const at::Tensor out = at::grid_sampler(img.unsqueeze(0).to(at::kFloat), grid, /*nearest*/ 1, /*zeros*/ 0, /*align_corners=*/false);
  return out.squeeze(0).round().to(at::kByte);
}

// F.affine with angle 0, scale 1: the centre given in pixels (shear: the top-left corner) or the image centre.
at::Tensor affine(const at::Tensor& img, double tx, double ty, double shear_x, double shear_y, bool corner) {
  const double cx = corner ? -0.5 * static_cast<double>(img.size(2)) : 0.0;
  const double cy = corner ? -0.5 * static_cast<double>(img.size(1)) : 0.0;
  return affine_nearest(img, inverse_affine(cx, cy, 0.0, tx, ty, shear_x, shear_y));
}

// _blend: ratio * a + (1 - ratio) * b in float32, clamped, truncated to uint8.
at::Tensor blend(const at::Tensor& a, const at::Tensor& b, double ratio) {
  return (a.to(at::kFloat) * ratio + b.to(at::kFloat) * (1.0 - ratio)).clamp(0, 255).to(at::kByte);
}

at::Tensor grayscale(const at::Tensor& img) {  // rgb_to_grayscale, one channel, uint8
  const at::Tensor r = img[0].to(at::kFloat), g = img[1].to(at::kFloat), b = img[2].to(at::kFloat);
  return (r * 0.2989 + g * 0.587 + b * 0.114).to(at::kByte).unsqueeze(0);
}

at::Tensor sharpness(const at::Tensor& img, double factor) {
  const int64_t c = img.size(0), h = img.size(1), w = img.size(2);
  if (h <= 2 || w <= 2) return img;
  at::Tensor kernel = at::ones({3, 3}, at::kFloat);
  kernel[1][1] = 5.0;
  kernel /= kernel.sum();
  const at::Tensor blurred = at::conv2d(img.unsqueeze(0).to(at::kFloat), kernel.expand({c, 1, 3, 3}), at::Tensor(), at::IntArrayRef{1},
                                            at::IntArrayRef{0}, at::IntArrayRef{1}, c)
                                 .squeeze(0).round().to(at::kByte);
  at::Tensor degenerate = img.clone();
  degenerate.narrow(1, 1, h - 2).narrow(2, 1, w - 2).copy_(blurred);
  return blend(img, degenerate, factor);
}

at::Tensor autocontrast(const at::Tensor& img) {
  at::Tensor minimum = img.amin({1, 2}, true).to(at::kFloat);
  const at::Tensor maximum = img.amax({1, 2}, true).to(at::kFloat);
  at::Tensor scale = 255.0 / (maximum - minimum);
  const at::Tensor flat = at::isfinite(scale).logical_not();
  minimum.masked_fill_(flat, 0);
  scale.masked_fill_(flat, 1);
  return ((img.to(at::kFloat) - minimum) * scale).clamp(0, 255).to(at::kByte);
}

at::Tensor equalize(const at::Tensor& img) {
  at::Tensor out = img.contiguous().clone();
  const int64_t c = img.size(0), n = img.size(1) * img.size(2);
  for (int64_t ch = 0; ch < c; ++ch) {
    uint8_t* p = out.data_ptr<uint8_t>() + ch * n;
    std::array<int64_t, 256> hist{};
    for (int64_t i = 0; i < n; ++i) ++hist[p[i]];
    int64_t last = 255;  // the largest nonzero bin, left out of the step
    while (hist[last] == 0) --last;
    int64_t nonzero_but_last = 0;
    for (int64_t v = 0; v < last; ++v) nonzero_but_last += hist[v];
    const int64_t step = nonzero_but_last / 255;
    if (step == 0) continue;
    std::array<uint8_t, 256> lut{};
    int64_t cumulative = 0;
    for (int64_t v = 0; v < 256; ++v) {  // lut = pad(floor((cumsum + step // 2) / step), [1, 0])[:-1]
      lut[v] = static_cast<uint8_t>(std::min<int64_t>(255, (cumulative + step / 2) / step));
      cumulative += hist[v];
    }
    for (int64_t i = 0; i < n; ++i) p[i] = lut[p[i]];
  }
  return out;
}

struct OpMeta {
  at::Tensor magnitudes;  // undefined: the op takes none
  bool is_signed;
};

// torchvision's _augmentation_space of each policy, for an image of height x width.
std::array<OpMeta, kAugmentOps> space(AugmentPolicy policy, int64_t height, int64_t width) {
  const bool wide = policy == AugmentPolicy::kTrivialAugmentWide;
  const auto lin = [](double a, double b) { return at::linspace(a, b, kBins, at::kFloat); };
  const double shear = wide ? 0.99 : 0.3, enhance = wide ? 0.99 : 0.9;
  const at::Tensor posterize = 8 - (at::arange(kBins, at::kLong) / ((kBins - 1) / (wide ? 6.0 : 4.0))).round().to(at::kInt);
  const at::Tensor none;
  return {{
      {none, false},
      {lin(0, shear), true},
      {lin(0, shear), true},
      {lin(0, wide ? 32.0 : 150.0 / 331.0 * static_cast<double>(width)), true},
      {lin(0, wide ? 32.0 : 150.0 / 331.0 * static_cast<double>(height)), true},
      {lin(0, wide ? 135.0 : 30.0), true},
      {lin(0, enhance), true},
      {lin(0, enhance), true},
      {lin(0, enhance), true},
      {lin(0, enhance), true},
      {posterize, false},
      {lin(255.0, 0.0), false},
      {none, false},
      {none, false},
  }};
}

}  // namespace

AugmentPolicy parse_policy(const std::string& name) {
  if (name == "none") return AugmentPolicy::kNone;
  if (name == "trivialaugment") return AugmentPolicy::kTrivialAugmentWide;
  if (name == "randaugment") return AugmentPolicy::kRandAugment;
  throw std::invalid_argument("unknown augmentation policy '" + name + "': expected 'trivialaugment', 'randaugment' or 'none'");
}

at::Tensor apply_augment_op(const at::Tensor& img, AugmentOp op, double m) {
  if (img.dim() != 3 || img.scalar_type() != at::kByte || (img.size(0) != 1 && img.size(0) != 3))
    throw std::invalid_argument("augmentation needs a uint8 image [C, H, W] with 1 or 3 channels");
  const double degrees_of_shear = std::atan(m) * 180.0 / std::numbers::pi;
  switch (op) {
    case AugmentOp::kIdentity: return img;
    case AugmentOp::kShearX: return affine(img, 0, 0, degrees_of_shear, 0, /*corner=*/true);
    case AugmentOp::kShearY: return affine(img, 0, 0, 0, degrees_of_shear, /*corner=*/true);
    case AugmentOp::kTranslateX: return affine(img, std::trunc(m), 0, 0, 0, false);
    case AugmentOp::kTranslateY: return affine(img, 0, std::trunc(m), 0, 0, false);
    case AugmentOp::kRotate: return affine_nearest(img, inverse_affine(0, 0, -m, 0, 0, 0, 0));  // F.rotate passes -angle
    case AugmentOp::kBrightness: return blend(img, at::zeros_like(img), 1.0 + m);
    case AugmentOp::kColor: return img.size(0) == 1 ? img : blend(img, grayscale(img), 1.0 + m);
    case AugmentOp::kContrast: {
      const at::Tensor mean = (img.size(0) == 3 ? grayscale(img) : img).to(at::kFloat).mean(at::IntArrayRef{0, 1, 2}, true);
      return blend(img, mean, 1.0 + m);
    }
    case AugmentOp::kSharpness: return sharpness(img, 1.0 + m);
    case AugmentOp::kPosterize: {
      const auto bits = static_cast<int>(m);
      return at::bitwise_and(img, static_cast<int64_t>(256 - (1 << (8 - bits))));
    }
    case AugmentOp::kSolarize: return at::where(img.to(at::kFloat) >= m, 255 - img, img);
    case AugmentOp::kAutoContrast: return autocontrast(img);
    case AugmentOp::kEqualize: return equalize(img);
  }
  return img;
}

at::Tensor apply_policy(const at::Tensor& img, AugmentPolicy policy, at::Generator& gen) {
  if (policy == AugmentPolicy::kNone) return img;
  const auto meta = space(policy, img.size(1), img.size(2));
  const bool wide = policy == AugmentPolicy::kTrivialAugmentWide;
  at::Tensor out = img;
  for (int64_t k = 0; k < (wide ? 1 : kRandAugmentOps); ++k) {
    const int64_t index = draw_int(kAugmentOps, gen);
    const OpMeta& op = meta[static_cast<std::size_t>(index)];
    double magnitude = 0;
    if (op.magnitudes.defined()) magnitude = op.magnitudes[wide ? draw_int(kBins, gen) : kRandAugmentBin].item<double>();
    if (op.is_signed && draw_int(2, gen) == 1) magnitude = -magnitude;
    out = apply_augment_op(out, static_cast<AugmentOp>(index), magnitude);
  }
  return out;
}

void random_erasing(at::Tensor& img, double p, at::Generator& gen) {
  if (p <= 0 || at::rand({1}, gen).item<double>() >= p) return;
  const int64_t h = img.size(1), w = img.size(2);
  const double area = static_cast<double>(h * w);
  const at::Tensor log_ratio = at::log(at::tensor({0.3, 3.3}, at::kDouble).to(at::kFloat));
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double erase_area = area * at::empty({1}, at::kFloat).uniform_(0.02, 0.33, gen).item<double>();
    const double aspect = std::exp(at::empty({1}, at::kFloat).uniform_(log_ratio[0].item<double>(), log_ratio[1].item<double>(), gen).item<double>());
    const auto eh = static_cast<int64_t>(std::nearbyint(std::sqrt(erase_area * aspect)));
    const auto ew = static_cast<int64_t>(std::nearbyint(std::sqrt(erase_area / aspect)));
    if (!(eh < h && ew < w)) continue;
    const int64_t top = draw_int(h - eh + 1, gen);  // torch.randint(0, n) draws as torch.randint(n)
    const int64_t left = draw_int(w - ew + 1, gen);
    img.narrow(1, top, eh).narrow(2, left, ew).zero_();
    return;
  }
}

}  // namespace densetorch
