// A C++ test of native/core (no N-API): the fused dense block (fused_block.cpp) against the
// layer-by-layer path it replaces, on whole DenseNets with the same weights (with the fused
// transitions and ImageNet stem). Bottleneck and plain layers, naive (keeping the bottleneck
// outputs) and memory-efficient (recomputing them), a CIFAR and an ImageNet stem (odd sizes too): outputs, the input gradient, every parameter gradient, the running
// statistics and num_batches_tracked after two training steps, then evaluation outputs (no
// autograd) and training mode without autograd. A second backward through a fused block is
// refused with a clear error. Compiled and run by test/20-native-core.test.js; prints "ok" and
// exits 0, or the differences and exits 1.
#include "dense_sources.h"
#include "../../native/core/precision.h"

#include <cstdio>
#include <cstdlib>
#include <string>

using namespace densetorch;

namespace {

double worst_difference = 0;
bool failed = false;

void expect_close(const at::Tensor& a, const at::Tensor& b, const std::string& what, double tolerance) {
  if (a.defined() != b.defined() || (a.defined() && a.sizes() != b.sizes())) {
    std::printf("FAIL %s: shapes differ\n", what.c_str());
    failed = true;
    return;
  }
  if (!a.defined()) return;
  const double scale = std::max(1.0, b.abs().max().item<double>());
  const double diff = (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / scale;
  worst_difference = std::max(worst_difference, diff);
  if (!(diff <= tolerance)) {
    std::printf("FAIL %s: relative difference %.3g\n", what.c_str(), diff);
    failed = true;
  }
}

void copy_state(DenseNet& from, DenseNet& to) {
  torch::NoGradGuard no_grad;
  auto src = from->named_parameters();
  for (auto& p : to->named_parameters()) p.value().copy_(src[p.key()]);
  auto bufs = from->named_buffers();
  for (auto& b : to->named_buffers()) b.value().copy_(bufs[b.key()]);
}

void compare_models(const DenseNetConfig& config, const std::string& name, int64_t size) {
  torch::manual_seed(1);
  DenseNet fused(config), reference(config);
  copy_state(fused, reference);
  const at::Tensor x0 = torch::randn({3, config.in_channels, size, size});
  for (int step = 0; step < 2; ++step) {
    std::vector<at::Tensor> grads[2], outs[2];
    int i = 0;
    for (auto* model : {&fused, &reference}) {
      set_fused_blocks(model == &fused);
      (*model)->train();
      at::Tensor x = x0.clone().requires_grad_(true);
      at::Tensor out = (*model)->forward(x);
      torch::manual_seed(7 + step);
      at::Tensor loss = (out * torch::randn(out.sizes())).sum();
      (*model)->zero_grad();
      loss.backward();
      outs[i].push_back(out.detach());
      grads[i].push_back(x.grad());
      for (auto& p : (*model)->named_parameters()) grads[i].push_back(p.value().grad());
      ++i;
    }
    const std::string tag = name + " step " + std::to_string(step + 1);
    expect_close(outs[0][0], outs[1][0], tag + " output", 1e-4);
    auto names = fused->named_parameters().keys();
    for (std::size_t g = 0; g < grads[0].size(); ++g)
      expect_close(grads[0][g], grads[1][g], tag + " gradient of " + (g == 0 ? std::string("the input") : names[g - 1]), 1e-4);
    auto rb = reference->named_buffers();
    for (auto& b : fused->named_buffers()) expect_close(b.value(), rb[b.key()], tag + " buffer " + b.key(), 1e-5);
    // The same update on both (plain SGD), so that step 2 starts from trained weights.
    torch::NoGradGuard no_grad;
    for (auto* model : {&fused, &reference})
      for (auto& p : (*model)->parameters()) p.sub_(p.grad(), 0.1);
  }
  at::Tensor out[2];
  for (bool train : {false, true}) {
    for (int i = 0; i < 2; ++i) {
      DenseNet& model = i == 0 ? fused : reference;
      set_fused_blocks(i == 0);
      model->train(train);
      torch::NoGradGuard no_grad;
      out[i] = model->forward(x0);
    }
    expect_close(out[0], out[1], name + (train ? " training mode without autograd" : " evaluation"), 1e-4);
  }
  auto rb = reference->named_buffers();
  for (auto& b : fused->named_buffers()) expect_close(b.value(), rb[b.key()], name + " buffer " + b.key() + " at the end", 1e-5);
}

// bfloat16 autocast (forward under autocast, backward after it, as fit does): the fused block,
// stem and transitions run their convolutions in bfloat16. The output and every gradient must be
// as close to float32's (cosine similarity) as LibTorch's own bfloat16 autocast layer by layer
// is, less a margin for rounding in other places; a missing or misplaced term falls far below.
// And not equal to float32 (bfloat16 did run).
void compare_bf16(const DenseNetConfig& config, const std::string& name, int64_t size) {
  torch::manual_seed(1);
  DenseNet models[3] = {DenseNet(config), DenseNet(config), DenseNet(config)};
  copy_state(models[0], models[1]);
  copy_state(models[0], models[2]);
  const at::Tensor x0 = torch::randn({8, config.in_channels, size, size});
  std::vector<at::Tensor> results[3];  // fused bf16, layer by layer bf16, layer by layer float32
  for (int i = 0; i < 3; ++i) {
    DenseNet& model = models[i];
    set_fused_blocks(i == 0);
    model->train();
    at::Tensor x = x0.clone().requires_grad_(true);
    at::Tensor out;
    {
      PrecisionScope scope(i < 2 ? Precision::kBf16 : Precision::kFp32, at::kCPU);
      out = model->forward(x).to(at::kFloat);
    }
    torch::manual_seed(7);
    (out * torch::randn(out.sizes())).sum().backward();
    results[i].push_back(out.detach());
    results[i].push_back(x.grad());
    for (auto& p : model->parameters()) results[i].push_back(p.grad());
  }
  auto cosine = [](const at::Tensor& a, const at::Tensor& b) {
    const at::Tensor x = a.to(at::kDouble).flatten(), y = b.to(at::kDouble).flatten();
    return (x.dot(y) / (x.norm() * y.norm() + 1e-30)).item<double>();
  };
  double worst[2] = {1, 1}, largest = 0;
  for (std::size_t r = 0; r < results[0].size(); ++r) {
    if (results[0][r].scalar_type() != at::kFloat) {
      std::printf("FAIL %s bf16: result %zu is %s, not float32\n", name.c_str(), r,
                  c10::toString(results[0][r].scalar_type()));
      failed = true;
      continue;
    }
    const double fused = cosine(results[0][r], results[2][r]), libtorch = cosine(results[1][r], results[2][r]);
    worst[0] = std::min(worst[0], fused);
    worst[1] = std::min(worst[1], libtorch);
    largest = std::max(largest, (results[0][r] - results[2][r]).abs().max().item<double>());
    if (!(fused >= std::min(0.99, libtorch) - 0.05)) {
      std::printf("FAIL %s bf16: result %zu has cosine similarity %.4f with float32 (LibTorch's autocast %.4f)\n",
                  name.c_str(), r, fused, libtorch);
      failed = true;
    }
  }
  if (!(largest > 0)) {
    std::printf("FAIL %s bf16: equal to float32: bfloat16 did not run\n", name.c_str());
    failed = true;
  }
  std::printf("%s under bfloat16 autocast: worst cosine similarity with float32 %.4f (LibTorch's autocast %.4f)\n",
              name.c_str(), worst[0], worst[1]);
}

}  // namespace

// The passes that write bfloat16 (norm_relu, affine_into: the CPU's vector kernels where it has
// them) give bitwise the values of the scalar formulas (with x * scale + shift fused or rounded
// twice), rounded by the generic kernels' to_bf16
// (as LibTorch rounds): rounding to nearest even (ties included),
// NaN, the infinities, negative values, a channel count with a tail, a strided channel slice,
// float32 and bfloat16 inputs.
// Equal bfloat16 values: the same bits, both NaN (which NaN an invalid operation yields, and
// which operand's payload an FMA propagates, is the instruction's choice), or +0 and -0 (ReLU as
// max(0, v) or as v < 0 ? 0 : v keeps either sign of a zero).
bool same_bf16(uint16_t a, uint16_t b) {
  const auto is_nan = [](uint16_t h) { return (h & 0x7F80) == 0x7F80 && (h & 0x7F) != 0; };
  return a == b || (is_nan(a) && is_nan(b)) || ((a & 0x7FFF) == 0 && (b & 0x7FFF) == 0);
}

void check_bf16_normalisation() {
  const int64_t C = 37;
  at::Tensor x = torch::randn({3, C + 3, 2, 5}).mul(4).contiguous(at::MemoryFormat::ChannelsLast);
  float* px = x.data_ptr<float>();
  const float specials[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                            -std::numeric_limits<float>::infinity(), -1.f, 0.f, 1.00390625f /* tie: 0x3F808000 */,
                            1.01171875f /* tie, odd: 0x3F818000 */};
  const at::Tensor scale = torch::rand({C}).add(0.5), shift = torch::randn({C});
  // Channels 5 (a vector's) and 35 (the tail's) of the slice below pass their values unchanged.
  for (int64_t c : {5, 35}) {
    scale.data_ptr<float>()[c] = 1.f;
    shift.data_ptr<float>()[c] = 0.f;
    for (std::size_t i = 0; i < std::size(specials); ++i) px[static_cast<int64_t>(i) * (C + 3) + 2 + c] = specials[i];
  }
  for (const at::Tensor& input : {x, x.to(at::kBFloat16)}) {
    const at::Tensor slice = input.narrow(1, 2, C);  // strided rows
    at::Tensor y = at::empty(slice.sizes(), slice.options().dtype(at::kBFloat16).memory_format(at::MemoryFormat::ChannelsLast));
    norm_passes::norm_relu(slice, y, scale, shift);
    const float *s = scale.data_ptr<float>(), *t = shift.data_ptr<float>();
    const at::Tensor in = slice.to(at::kFloat).contiguous(at::MemoryFormat::ChannelsLast);
    const float* pin = in.data_ptr<float>();
    const auto* py = static_cast<const uint16_t*>(y.data_ptr());
    // affine_into: g + k1 * (x - mean) + k0, with the special values in g.
    const at::Tensor g = x.narrow(1, 3, C), mean = torch::randn({C}), k1 = torch::randn({C}), k0 = torch::randn({C});
    const at::Tensor z = affine_into(slice, panel_of(g), mean.data_ptr<float>(), k1.data_ptr<float>(),
                                     k0.data_ptr<float>(), at::kBFloat16);
    const at::Tensor gd = g.contiguous(at::MemoryFormat::ChannelsLast);
    const float *pg = gd.data_ptr<float>(), *pm = mean.data_ptr<float>(), *p1 = k1.data_ptr<float>(),
                *p0 = k0.data_ptr<float>();
    const auto* pz = static_cast<const uint16_t*>(z.data_ptr());
    int64_t mismatches = 0, affine_mismatches = 0;
    // x * scale + shift as one fused multiply-add (the hand-written AVX-512 passes) or rounded
    // twice (the compiler-vectorised passes, where the CPU capability keeps them off AVX-512 and
    // the compiler does not contract): either rounding is exact, so either result is accepted.
    const auto relu_bf16 = [](float v) { return norm_passes::to_bf16(v < 0.f ? 0.f : v); };
    const auto twice = [](float a, float b, float c) {
      volatile float product = a * b;  // kept apart from the addition
      return product + c;
    };
    for (int64_t r = 0; r < in.numel() / C; ++r)
      for (int64_t c = 0; c < C; ++c) {
        const float x = pin[r * C + c];
        const uint16_t fused = relu_bf16(std::fma(x, s[c], t[c])), apart = relu_bf16(twice(x, s[c], t[c]));
        if (!same_bf16(py[r * C + c], fused) && !same_bf16(py[r * C + c], apart) && mismatches++ == 0)
          std::printf("first normalised mismatch: x %a scale %a shift %a: got bf16 0x%04x, formula 0x%04x or 0x%04x\n",
                      static_cast<double>(x), static_cast<double>(s[c]), static_cast<double>(t[c]), py[r * C + c],
                      fused, apart);
        const int64_t i = r * C + c;
        const uint16_t affine_fused = norm_passes::to_bf16(std::fma(p1[c], pin[i] - pm[c], pg[i]) + p0[c]);
        const uint16_t affine_apart = norm_passes::to_bf16(twice(p1[c], pin[i] - pm[c], pg[i]) + p0[c]);
        affine_mismatches += !same_bf16(pz[i], affine_fused) && !same_bf16(pz[i], affine_apart);
      }
    if (mismatches != 0 || affine_mismatches != 0) {
      std::printf("FAIL bfloat16 output from %s: %lld normalised and %lld affine values differ from the scalar formulas\n",
                  c10::toString(input.scalar_type()), static_cast<long long>(mismatches),
                  static_cast<long long>(affine_mismatches));
      failed = true;
    }
  }
}

// Whether this process runs the Winograd kernel in the models: where an ISA variant of it runs and
// the own-3x3 rule (or DENSETORCH_WINOGRAD) says so (the test also runs with it off, to cover
// LibTorch's 3x3 convolutions and the nine taps in the models).
bool winograd_expected() { return convolutions::own_conv3x3() && winograd::accelerated(); }

// A 3x3 convolution's weight gradient computed by `run` (grad, x) equals LibTorch's for every
// channel count c, output channel count n and image size where `available` (n, c) says it runs.
// Returns the shapes checked; prints the largest relative difference.
template <class Available, class Run>
int check_weight_grad(const char* name, std::initializer_list<int64_t> cs, std::initializer_list<int64_t> ns,
                      std::initializer_list<std::pair<int64_t, int64_t>> sizes, const Available& available,
                      const Run& run) {
  int checked = 0;
  double worst = 0;
  for (int64_t c : cs)
    for (int64_t n : ns)
      for (auto [H, W] : sizes) {
        if (!available(n, c)) continue;
        const at::Tensor x = torch::randn({3, c, H, W}).contiguous(at::MemoryFormat::ChannelsLast);
        const at::Tensor grad = torch::randn({3, n, H, W});
        const at::Tensor w = torch::randn({n, c, 3, 3});
        const at::Tensor want = std::get<1>(at::convolution_backward(grad, x, w, std::nullopt, {1, 1}, {1, 1}, {1, 1},
                                                                     false, {0, 0}, 1, {false, true, false}));
        const at::Tensor got = run(grad, x);
        const double diff = ((got - want).abs().max() / want.abs().max()).item<double>();
        worst = std::max(worst, diff);
        ++checked;
        if (!(diff < 1e-5) || got.sizes() != want.sizes()) {
          std::printf("FAIL %s c=%ld n=%ld %ldx%ld: relative difference %g\n", name, static_cast<long>(c),
                      static_cast<long>(n), static_cast<long>(H), static_cast<long>(W), diff);
          failed = true;
        }
      }
  std::printf("%s (capability %s): %d shapes, largest relative difference %.2e\n", name, kernels::name(kernels::capability()), checked,
              worst);
  return checked;
}

// The 3x3 convolution's weight gradient through norm_gemm's kernel (nine taps over zero-padded
// copies) equals LibTorch's: channel counts of one and several vectors, output channels of one and
// several kernel row blocks, images of 1x1 (every tap reads the border), odd and square sizes, a
// gradient that is not channels-last. The same through the Winograd kernel: whole vectors of
// channels and counts that are not (BC-100's 48 -> 12, 5 -> 3, 12 -> 20), rows and columns no 2x2
// tile divides, images of one tile.
void check_conv3x3_weight_grad() {
  check_weight_grad("3x3 weight gradient through norm_gemm", {16, 48, 128}, {8, 12, 32}, {{1, 1}, {5, 7}, {8, 8}},
                    conv3x3::weight_grad_available, convolutions::conv3x3_weight_grad);
  const int winograd = check_weight_grad(
      "3x3 weight gradient through Winograd", {5, 8, 12, 48, 128}, {3, 8, 12, 20, 32}, {{2, 2}, {5, 7}, {9, 8}},
      [](int64_t n, int64_t c) { return winograd::available(c, n); }, convolutions::conv3x3_winograd_weight_grad);
  if (winograd_expected() && winograd == 0) {
    std::printf("FAIL: the AVX2 kernel ran no Winograd weight gradient\n");
    failed = true;
  }
}

int main() {
  at::set_num_threads(2);  // the fused kernels split rows between threads
  check_bf16_normalisation();
  check_conv3x3_weight_grad();
  DenseNetConfig bc;  // DenseNet-BC, CIFAR stem
  bc.growth_rate = 4;
  bc.block_config = {3, 2};
  bc.num_init_features = 6;
  bc.bn_size = 2;
  bc.num_classes = 5;
  bc.stem = Stem::kCifar;
  for (bool efficient : {false, true}) {
    bc.memory_efficient = efficient;
    compare_models(bc, std::string("bottleneck ") + (efficient ? "memory-efficient" : "naive"), 8);
  }
  // Memory-efficient with inputs wider than 6k channels in the first block (28, 32, 36: those
  // layers keep their bottleneck outputs, keeps_bottleneck_when_efficient) and no wider in the
  // second (20, 24).
  DenseNetConfig mixed = bc;
  mixed.num_init_features = 28;
  mixed.memory_efficient = true;
  if (!keeps_bottleneck_when_efficient(28, 4) || keeps_bottleneck_when_efficient(24, 4)) {
    std::printf("FAIL: the mixed configuration does not mix kept and recomputed bottleneck outputs\n");
    failed = true;
  }
  compare_models(mixed, "bottleneck memory-efficient, kept and recomputed bottleneck outputs", 8);
  DenseNetConfig plain = bc;  // plain 3x3 layers
  plain.bn_size = 0;
  plain.memory_efficient = true;
  compare_models(plain, "plain layers memory-efficient", 8);
  plain.memory_efficient = false;
  compare_models(plain, "plain layers naive", 8);
  // Bottlenecks of 16, 48 and 64 channels: the 1x1 convolutions run norm_gemm's kernel (one, three
  // and four vectors per panel); 7x7 images give rows that no micro-kernel height divides.
  for (auto [growth, bn_size] : {std::pair{8, 2}, std::pair{12, 4}, std::pair{16, 4}}) {
    DenseNetConfig wide = bc;
    wide.growth_rate = growth;
    wide.bn_size = bn_size;
    wide.num_init_features = 2 * growth;
    for (bool efficient : {false, true}) {
      wide.memory_efficient = efficient;
      compare_models(wide, "bottleneck of " + std::to_string(growth * bn_size) + " channels " +
                               (efficient ? "memory-efficient" : "naive"), 7);
    }
  }
  // 7x7 and 3x3 images at batch 3 (147 and 27 pixels), 16 new channels: in evaluation the 3x3
  // convolutions run through norm_gemm's product (few pixels: conv3x3_gemm), and the transition
  // (64 -> 32 channels) its 1x1 convolution through norm_gemm without normalisation.
  DenseNetConfig late = bc;
  late.growth_rate = 16;
  late.bn_size = 4;
  late.num_init_features = 32;
  late.block_config = {2, 2};
  {
    torch::NoGradGuard no_grad;
    if (norm_gemm::accelerated() &&
        !convolutions::gemm3x3_runs(at::kFloat, at::empty({3, 64, 7, 7}), at::empty({16, 64, 3, 3}), 1)) {
      std::printf("FAIL: evaluation does not run the 3x3 convolution through the product at 7x7, batch 3\n");
      failed = true;
    }
  }
  compare_models(late, "16 new channels, 7x7 images at batch 3", 7);
  // 9x9 images, 12 new channels (not a whole number of AVX2 vectors) from 48 (bottleneck) or
  // 24..60 (plain): with the AVX2 kernel the first block's 3x3 convolutions run through the
  // Winograd kernel (forward, input and weight gradients), the second block's 4x4 images for the
  // input gradient only; with DENSETORCH_WINOGRAD=0 the first block's weight gradients go through
  // norm_gemm's nine taps, the rest through LibTorch.
  DenseNetConfig taps = bc;
  taps.growth_rate = 12;
  taps.num_init_features = 24;
  for (int64_t bn_size : {4, 0})
    for (bool efficient : {false, true}) {
      taps.bn_size = bn_size;
      taps.memory_efficient = efficient;
      compare_models(taps, std::string(bn_size ? "bottleneck of 48 channels" : "plain layers of 12 channels") +
                               ", 9x9 images " + (efficient ? "memory-efficient" : "naive"), 9);
    }
  // 9x9 images, 8 new channels from 32 (bottleneck) or 16..32 (plain): with the AVX2 kernel the
  // first block's 3x3 convolutions run through the Winograd kernel forward (batch norm + ReLU in
  // its input transform in training, the folded bottleneck's output in evaluation) and for the
  // input gradient, the second block's 4x4 images for the input gradient only.
  DenseNetConfig wino = bc;
  wino.growth_rate = 8;
  wino.bn_size = 4;
  wino.num_init_features = 16;
  if (winograd_expected() && !convolutions::winograd_runs(at::kFloat, at::empty({8, 32, 3, 3}), 1, 9, 9, true)) {
    std::printf("FAIL: the models do not run the Winograd convolution for 32 -> 8 channels at 9x9\n");
    failed = true;
  }
  for (int64_t bn_size : {4, 0})
    for (bool efficient : {false, true}) {
      wino.bn_size = bn_size;
      wino.memory_efficient = efficient;
      compare_models(wino, std::string(bn_size ? "bottleneck" : "plain") + " layers of 8 channels, 9x9 images " +
                               (efficient ? "memory-efficient" : "naive"), 9);
    }
  DenseNetConfig imagenet = bc;  // 7x7 stem, max pool
  imagenet.stem = Stem::kImageNet;
  imagenet.num_init_features = 8;
  compare_models(imagenet, "ImageNet stem", 32);
  compare_models(imagenet, "ImageNet stem, odd sizes", 37);  // pooling windows cut by the edges
  imagenet.memory_efficient = true;
  compare_models(imagenet, "ImageNet stem memory-efficient", 32);

  compare_bf16(bc, "bottleneck", 8);
  DenseNetConfig plain_bf16 = bc;
  plain_bf16.bn_size = 0;
  compare_bf16(plain_bf16, "plain layers", 8);
  imagenet.memory_efficient = false;
  compare_bf16(imagenet, "ImageNet stem", 32);

  // A second backward through a fused block is refused, not silently wrong.
  set_fused_blocks(true);
  DenseNet model(bc);
  model->train();
  at::Tensor loss = model->forward(torch::randn({2, 3, 8, 8})).sum();
  loss.backward({}, /*retain_graph=*/true);
  try {
    loss.backward();
    std::printf("FAIL: a second backward through a fused block was not refused\n");
    failed = true;
  } catch (const std::exception& e) {
    if (std::string(e.what()).find("second time") == std::string::npos) {
      std::printf("FAIL: unexpected error for a second backward: %s\n", e.what());
      failed = true;
    }
  }

  std::printf("largest relative difference between the fused and the layer-by-layer block: %.3g\n", worst_difference);
  if (failed) return 1;
  std::printf("ok\n");
  return 0;
}
