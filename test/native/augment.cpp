// A C++ test of native/core/augment: each of the 14 operations against its formula (torchvision's
// tensor semantics: uint8, nearest sampling, zero fill), TrivialAugmentWide's and RandAugment's
// draws replayed from a copy of the generator (op, magnitude bin, sign; their magnitude tables),
// and RandomErasing's box. Compiled and run by test/20-native-core.test.js; prints "ok" and
// exits 0, or what went wrong and exits 1.
#include "check.h"
#include "../../native/core/augment.cpp"

#include <ATen/CPUGeneratorImpl.h>

#include <cstdio>

using namespace densetorch;
using densetorch_test::check;
using densetorch_test::failures;

namespace {

at::Tensor image(int64_t c, int64_t h, int64_t w, uint64_t seed) {
  at::Generator gen = at::detail::createCPUGenerator(seed);
  return at::randint(0, 256, {c, h, w}, gen, at::TensorOptions().dtype(at::kByte));
}

bool same(const at::Tensor& a, const at::Tensor& b) { return a.sizes() == b.sizes() && a.to(at::kInt).equal(b.to(at::kInt)); }

// Each pixel of a uint8 image through f.
template <typename F>
at::Tensor per_pixel(const at::Tensor& img, F f) {
  at::Tensor out = img.clone();
  uint8_t* p = out.data_ptr<uint8_t>();
  for (int64_t i = 0; i < out.numel(); ++i) p[i] = static_cast<uint8_t>(f(p[i]));
  return out;
}

void operations() {
  const at::Tensor rgb = image(3, 12, 12, 1), grey = image(1, 12, 12, 2);
  using Op = AugmentOp;
  for (const auto& img : {rgb, grey}) {
    check(same(apply_augment_op(img, Op::kIdentity, 0), img), "Identity");
    for (Op op : {Op::kShearX, Op::kShearY, Op::kTranslateX, Op::kTranslateY, Op::kRotate, Op::kBrightness, Op::kColor, Op::kContrast, Op::kSharpness})
      check(same(apply_augment_op(img, op, 0), img), "magnitude 0 leaves the geometric ops and the enhancements (factor 1) as they are");
    // Translation by whole pixels: out[x] = in[x - t], zero where nothing comes in.
    const at::Tensor tx = apply_augment_op(img, Op::kTranslateX, 3.7);  // int(3.7) = 3 pixels right
    check(same(tx.narrow(2, 3, 9), img.narrow(2, 0, 9)) && tx.narrow(2, 0, 3).sum().item<int64_t>() == 0, "TranslateX moves right by int(m) pixels, zero fill");
    const at::Tensor ty = apply_augment_op(img, Op::kTranslateY, -2.0);
    check(same(ty.narrow(1, 0, 10), img.narrow(1, 2, 10)) && ty.narrow(1, 10, 2).sum().item<int64_t>() == 0, "TranslateY by -2 moves up");
    // Rotation by 90 degrees is counter-clockwise: the top-right corner comes to the top-left.
    check(same(apply_augment_op(img, Op::kRotate, 90), at::rot90(img, 1, {1, 2})), "Rotate(90) turns the image counter-clockwise");
    check(same(apply_augment_op(img, Op::kBrightness, 0.5), per_pixel(img, [](int v) { return std::min(255, static_cast<int>(v * 1.5f)); })),
          "Brightness: trunc(clamp(v * (1 + m)))");
    check(same(apply_augment_op(img, Op::kPosterize, 3), per_pixel(img, [](int v) { return v & 0xE0; })), "Posterize keeps the top int(m) bits");
    check(same(apply_augment_op(img, Op::kSolarize, 100.5), per_pixel(img, [](int v) { return v >= 100.5 ? 255 - v : v; })),
          "Solarize inverts pixels >= the threshold");
    // AutoContrast stretches each channel to [0, 255]; a flat channel stays.
    const at::Tensor ac = apply_augment_op(img, Op::kAutoContrast, 0);
    for (int64_t ch = 0; ch < img.size(0); ++ch) {
      const int lo = img[ch].min().item<int>(), hi = img[ch].max().item<int>();
      const float scale = 255.0f / static_cast<float>(hi - lo);
      check(same(ac[ch], per_pixel(img[ch], [&](int v) { return static_cast<int>(std::min(255.0f, (static_cast<float>(v) - static_cast<float>(lo)) * scale)); })),
            "AutoContrast: (v - min) * 255 / (max - min) per channel");
    }
    const at::Tensor flat = at::full({1, 4, 4}, 77, at::kByte);
    check(same(apply_augment_op(flat, Op::kAutoContrast, 0), flat) && same(apply_augment_op(flat, Op::kEqualize, 0), flat),
          "a flat image is left as it is by AutoContrast and Equalize");
    // Equalize against torchvision's _scale_channel written with tensor operations.
    const at::Tensor eq = apply_augment_op(img, Op::kEqualize, 0);
    for (int64_t ch = 0; ch < img.size(0); ++ch) {
      const at::Tensor hist = at::bincount(img[ch].reshape(-1).to(at::kLong), {}, 256);
      const at::Tensor nonzero = hist.masked_select(hist != 0);
      const int64_t step = nonzero.narrow(0, 0, nonzero.size(0) - 1).sum().item<int64_t>() / 255;
      at::Tensor want = img[ch];
      if (step != 0) {
        at::Tensor lut = at::div(at::cumsum(hist, 0) + step / 2, step, "floor");
        lut = at::constant_pad_nd(lut, {1, 0}).narrow(0, 0, 256).clamp(0, 255);
        want = lut.index({img[ch].to(at::kLong)}).to(at::kByte);
      }
      check(same(eq[ch], want), "Equalize: torchvision's histogram lookup table per channel");
    }
    // Sharpness with factor 0 is the smoothed image inside, the border untouched.
    const at::Tensor sharp = apply_augment_op(img, Op::kSharpness, -1.0);
    check(same(sharp.narrow(1, 0, 1), img.narrow(1, 0, 1)) && same(sharp.narrow(2, 11, 1), img.narrow(2, 11, 1)), "Sharpness keeps the border");
    const at::Tensor k = at::tensor({1.f, 1.f, 1.f, 1.f, 5.f, 1.f, 1.f, 1.f, 1.f}, at::kFloat).view({3, 3}) / 13.f;
    const float inner = (img[0].narrow(0, 0, 3).narrow(1, 0, 3).to(at::kFloat) * k).sum().item<float>();
    check(sharp[0][1][1].item<int>() == static_cast<int>(std::nearbyint(inner)), "Sharpness(0): the 3x3 kernel (1, 5 in the centre) / 13, rounded");
  }
  // Colour: a grey image is left alone; factor 0 gives the luma in every channel.
  check(same(apply_augment_op(grey, AugmentOp::kColor, 0.7), grey), "Color leaves a one-channel image alone");
  const at::Tensor r = rgb[0].to(at::kFloat), g = rgb[1].to(at::kFloat), b = rgb[2].to(at::kFloat);
  const at::Tensor luma = (r * 0.2989 + g * 0.587 + b * 0.114).to(at::kByte);
  const at::Tensor desat = apply_augment_op(rgb, AugmentOp::kColor, -1.0);
  check(same(desat[0], luma) && same(desat[2], luma), "Color(factor 0) is rgb_to_grayscale");
  const float mean = luma.to(at::kFloat).mean().item<float>();
  check(same(apply_augment_op(rgb, AugmentOp::kContrast, -1.0), at::full_like(rgb, 0).add(static_cast<int>(mean))),
        "Contrast(factor 0) is the grey mean everywhere");
}

double table(AugmentPolicy policy, AugmentOp op, int64_t bin, int64_t h, int64_t w) {
  const bool wide = policy == AugmentPolicy::kTrivialAugmentWide;
  const auto lin = [&](double top) { return at::linspace(0.0, top, 31, at::kFloat)[bin].item<double>(); };
  switch (op) {
    case AugmentOp::kShearX: case AugmentOp::kShearY: return lin(wide ? 0.99 : 0.3);
    case AugmentOp::kTranslateX: return lin(wide ? 32.0 : 150.0 / 331.0 * static_cast<double>(w));
    case AugmentOp::kTranslateY: return lin(wide ? 32.0 : 150.0 / 331.0 * static_cast<double>(h));
    case AugmentOp::kRotate: return lin(wide ? 135.0 : 30.0);
    case AugmentOp::kBrightness: case AugmentOp::kColor: case AugmentOp::kContrast: case AugmentOp::kSharpness: return lin(wide ? 0.99 : 0.9);
    case AugmentOp::kPosterize: return 8 - std::nearbyint(static_cast<double>(bin) / (30.0 / (wide ? 6.0 : 4.0)));
    case AugmentOp::kSolarize: return at::linspace(255.0, 0.0, 31, at::kFloat)[bin].item<double>();
    default: return 0;
  }
}

bool has_magnitude(AugmentOp op) { return op != AugmentOp::kIdentity && op != AugmentOp::kAutoContrast && op != AugmentOp::kEqualize; }
bool is_signed(AugmentOp op) { return has_magnitude(op) && op != AugmentOp::kPosterize && op != AugmentOp::kSolarize; }

void policies() {
  const at::Tensor img = image(3, 16, 20, 5);
  std::array<int, kAugmentOps> seen{};
  for (uint64_t seed = 0; seed < 300; ++seed) {
    for (AugmentPolicy policy : {AugmentPolicy::kTrivialAugmentWide, AugmentPolicy::kRandAugment}) {
      at::Generator gen = at::detail::createCPUGenerator(seed);
      at::Generator replay = gen.clone();
      const at::Tensor got = apply_policy(img, policy, gen);
      const bool wide = policy == AugmentPolicy::kTrivialAugmentWide;
      at::Tensor want = img;
      for (int k = 0; k < (wide ? 1 : 2); ++k) {
        const auto op = static_cast<AugmentOp>(at::randint(kAugmentOps, {1}, replay, at::TensorOptions().dtype(at::kLong)).item<int64_t>());
        if (wide) ++seen[static_cast<std::size_t>(op)];
        double m = 0;
        if (has_magnitude(op))
          m = table(policy, op, wide ? at::randint(31, {1}, replay, at::TensorOptions().dtype(at::kLong)).item<int64_t>() : 9, 16, 20);
        if (is_signed(op) && at::randint(2, {1}, replay, at::TensorOptions().dtype(at::kLong)).item<int64_t>() == 1) m = -m;
        want = apply_augment_op(want, op, m);
      }
      check(same(got, want), wide ? "TrivialAugmentWide: one op, a magnitude bin of 31, a sign, in torchvision's order and tables"
                                  : "RandAugment: two ops at bin 9 of 31, each with a sign, in torchvision's order and tables");
    }
  }
  int lo = 1 << 30, hi = 0;
  for (int n : seen) lo = std::min(lo, n), hi = std::max(hi, n);
  std::printf("TrivialAugmentWide over 300 draws: each of the 14 ops chosen %d to %d times\n", lo, hi);
  check(lo > 5, "every op is drawn");
}

void erasing() {
  int erased = 0;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    at::Tensor x = at::ones({3, 28, 28});
    at::Generator gen = at::detail::createCPUGenerator(seed);
    at::Generator replay = gen.clone();
    random_erasing(x, 0.5, gen);
    at::Tensor want = at::ones({3, 28, 28});
    if (at::rand({1}, replay).item<double>() < 0.5) {
      const at::Tensor log_ratio = at::log(at::tensor({0.3f, 3.3f}));
      for (int attempt = 0; attempt < 10; ++attempt) {
        const double area = 784.0 * at::empty({1}).uniform_(0.02, 0.33, replay).item<double>();
        const double aspect = std::exp(at::empty({1}).uniform_(log_ratio[0].item<double>(), log_ratio[1].item<double>(), replay).item<double>());
        const auto h = static_cast<int64_t>(std::nearbyint(std::sqrt(area * aspect))), w = static_cast<int64_t>(std::nearbyint(std::sqrt(area / aspect)));
        if (!(h < 28 && w < 28)) continue;
        const int64_t i = at::randint(0, 28 - h + 1, {1}, replay, at::TensorOptions().dtype(at::kLong)).item<int64_t>();
        const int64_t j = at::randint(0, 28 - w + 1, {1}, replay, at::TensorOptions().dtype(at::kLong)).item<int64_t>();
        want.narrow(1, i, h).narrow(2, j, w).zero_();
        ++erased;
        break;
      }
    }
    check(x.equal(want), "RandomErasing: torchvision's get_params box (scale 0.02-0.33, log-uniform ratio 0.3-3.3), zeroed in every channel");
  }
  std::printf("RandomErasing(p = 0.5): %d of 400 images erased\n", erased);
  check(erased > 160 && erased < 240, "about half the images are erased");
  at::Tensor x = at::ones({1, 8, 8});
  at::Generator gen = at::detail::createCPUGenerator(0);
  random_erasing(x, 0, gen);
  check(x.equal(at::ones({1, 8, 8})), "p = 0 erases nothing");
}

}  // namespace

int main() {
  operations();
  policies();
  erasing();
  if (failures) return 1;
  std::printf("ok\n");
  return 0;
}
