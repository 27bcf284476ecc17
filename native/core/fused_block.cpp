// The fused dense block, transition and stem (fused_block.h): their forward and backward as
// custom autograd functions, built on the per-pixel passes (kernels/norm_passes.h) and the
// convolutions (convolutions.h).
#include "fused_block.h"

#include "derived_cache.h"

#include "convolutions.h"
#include "env_switches.h"
#include "kernels/norm_passes.h"

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

namespace densetorch {


namespace {

using convolutions::compute_dtype;
using convolutions::conv;
using convolutions::conv3x3_gemm;
using convolutions::conv3x3_winograd;
using convolutions::conv_backward;
using convolutions::gemm3x3_runs;
using convolutions::norm_gemm_runs;
using convolutions::norm_relu_conv1x1;
using convolutions::norm_relu_conv1x1_backward;
using convolutions::NormAffine;
using convolutions::winograd_runs;
using kernels::Panel;
using kernels::panel_of;
using norm_passes::affine_add;
using norm_passes::affine_into;
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

constexpr auto kChannelsLast = at::MemoryFormat::ChannelsLast;


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
  norm_passes::norm_relu(x, y, scale, shift);
  return y;
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
  at::Tensor grad_bias = norm_passes::float_vector(sums.first);
  at::Tensor grad_weight = norm_passes::float_vector(sums.second) * invstd;
  const double n = static_cast<double>(count);
  at::Tensor k1 = (-scale * grad_weight * invstd / n).contiguous();
  at::Tensor k0 = (-scale * grad_bias / n).contiguous();
  return {grad_weight, grad_bias, k1, k0};
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
  const auto sums = norm_passes::norm_relu_grad(grad.contiguous(kChannelsLast), x, g, a.scale, a.shift, mean, false);
  const NormGradTerms terms = norm_grad_terms(sums, a.scale, a.invstd, pixels(x));
  const float *m = mean.data_ptr<float>(), *k1 = terms.k1.data_ptr<float>(), *k0 = terms.k0.data_ptr<float>();
  if (dtype != at::kFloat) return {terms.grad_weight, terms.grad_bias, affine_into(x, g, m, k1, k0, dtype)};
  affine_add(x, g, m, k1, k0);  // as finish_norm_backward
  return {terms.grad_weight, terms.grad_bias, gx};
}


// Training-mode batch norm of a whole panel: its batch statistics (running statistics updated as
// BatchNorm2d does) and the affine form x * scale + shift.
struct BatchStats {
  at::Tensor mean, var;
  NormAffine a;
};
BatchStats batch_norm_of(const at::Tensor& x, const NormArgs& norm) {
  auto [mean, var] = norm_passes::channel_stats(x);
  update_running(norm, mean, var, pixels(x));
  const NormAffine a = convolutions::affine(norm.weight, norm.bias, mean, var, norm.eps);
  return {mean, var, a};
}

// What backward needs from forward (training only).
struct BlockState {
  at::Tensor mean, var;  // batch statistics of every channel of the block, [C0 + L*k]
  std::vector<at::Tensor> y1, mean2, var2;  // bottleneck layers: conv1's output (compute dtype) and its statistics
  bool memory_efficient = false;  // y1 of narrow layers left undefined: backward recomputes it
};


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
    auto [m, v] = norm_passes::channel_stats(buffer.narrow(1, 0, C0));
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
      a1 = convolutions::affine(layer.norm1.weight, layer.norm1.bias, m, v, layer.norm1.eps);
    } else {
      a1 = convolutions::running_affine(layer.norm1.weight, layer.norm1.bias, layer.norm1.running_mean,
                                        layer.norm1.running_var, layer.norm1.eps);
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
      else if (gemm3x3_runs(compute, y1, layer.conv2_weight, 1))
        conv3x3_gemm(y1.contiguous(kChannelsLast), layer.conv2_weight, added);
      else
        out = conv(compute, y1, layer.conv2_weight, {}, 1);
    } else {
      const NormArgs& n2 = *layer.norm2;
      at::Tensor y1 =
          norm_relu_conv1x1(compute, features, a1.scale, a1.shift, layer.conv1_weight, {}, /*relu=*/false);
      if (!y1.defined())
        y1 = conv(compute, storage1.normalized(features, a1), layer.conv1_weight, {}, 0).contiguous(kChannelsLast);
      auto [m2, v2] = norm_passes::channel_stats(y1);
      update_running(n2, m2, v2, count);
      const NormAffine a2 = convolutions::affine(n2.weight, n2.bias, m2, v2, n2.eps);
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
    auto [m, v] = out.defined() ? norm_passes::append_features(out.contiguous(kChannelsLast), added, training)
                  : training      ? norm_passes::channel_stats(added)
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
      const NormAffine a1 = convolutions::affine(p[0], p[1], m, var.narrow(0, 0, channels), eps1[j]);
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
        const NormAffine a2 = convolutions::affine(p[3], p[4], mean2[j], var2[j], eps2[j]);
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
          channels, norm_passes::norm_relu_grad(g_cl, features, grad_features, a1.scale, a1.shift, m, true), a1.scale,
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
    at::Tensor pooled = norm_passes::norm_relu_pool2(x, bn.a.scale, bn.a.shift);
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
    const NormAffine a = convolutions::affine(norm_weight, norm_bias, stats[0], stats[1], ctx->saved_data["eps"].toDouble());
    at::Tensor pooled = saved[4].defined() ? saved[4] : norm_passes::norm_relu_pool2(x, a.scale, a.shift);
    auto [g_pooled, g_conv] = conv_backward(static_cast<at::ScalarType>(ctx->saved_data["compute"].toInt()),
                                            grad_outputs[0].contiguous(kChannelsLast), pooled, conv_weight, 0);
    pooled.reset();
    const at::Tensor gp = g_pooled.to(at::kFloat).mul(0.25).contiguous(kChannelsLast);  // the window's weight
    g_pooled.reset();
    at::Tensor gx = at::empty(x.sizes(), x.options().dtype(at::kFloat).memory_format(kChannelsLast));
    auto [grad_weight, grad_bias] = finish_norm_backward(
        norm_passes::norm_relu_pool2_grad(x, gp, gx, a.scale, a.shift, stats[0]), x, panel_of(gx), a, stats[0]);
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
    return norm_passes::norm_relu_maxpool(x, bn.a.scale, bn.a.shift);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const std::vector<at::Tensor> stats = take(ctx, "stats");
    const NormAffine a = convolutions::affine(saved[1], saved[2], stats[0], stats[1], ctx->saved_data["eps"].toDouble());
    const at::TensorOptions grad_options = x.options().dtype(at::kFloat).memory_format(kChannelsLast);
    at::Tensor gz = at::empty(x.sizes(), grad_options);
    norm_passes::norm_relu_maxpool_grad(x, grad_outputs[0].to(at::kFloat).contiguous(kChannelsLast), gz, a.scale,
                                          a.shift);
    at::Tensor gx = at::empty(x.sizes(), grad_options);
    const Panel gxp = panel_of(gx);
    const auto sums = norm_passes::norm_relu_grad(gz, x, gxp, a.scale, a.shift, stats[0], false);
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
  const NormAffine a = convolutions::running_affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps);
  return norm_passes::norm_relu_maxpool(x, a.scale, a.shift);
}

at::Tensor fused_transition(const at::Tensor& x, const NormArgs& norm, const at::Tensor& conv_weight,
                            bool keep_pooled) {
  return FusedTransitionFunction::apply(x, norm.weight, norm.bias, norm.running_mean, norm.running_var, conv_weight,
                                        norm.momentum, norm.eps, keep_pooled);
}

at::Tensor eval_transition(const at::Tensor& x, const NormArgs& norm, const at::Tensor& conv_weight) {
  const NormAffine a = convolutions::running_affine(norm.weight, norm.bias, norm.running_mean, norm.running_var, norm.eps);
  const at::Tensor pooled = norm_passes::norm_relu_pool2(x, a.scale, a.shift);
  // No normalisation in the product: the pooled map is normalised already.
  const at::Tensor y = norm_relu_conv1x1(compute_dtype(), pooled, {}, {}, conv_weight, {}, /*relu=*/false);
  return y.defined() ? y : at::conv2d(pooled, conv_weight);
}

FoldedConv fold_norm_into_conv(const at::Tensor& conv_weight, const NormArgs& norm) {
  const auto fold = [&]() -> FoldedConv {
    const at::Tensor scale = norm.weight * (norm.running_var + norm.eps).rsqrt();
    return {conv_weight * scale.view({-1, 1, 1, 1}), norm.bias - norm.running_mean * scale};
  };
  if (at::GradMode::is_enabled()) return fold();
  // Evaluation: folded once per version of the weights and statistics (the same folded tensor
  // then also keeps its packed form, convolutions.cpp), not on every forward pass.
  static auto* cache = new DerivedCache<FoldedConv, 5>();  // never destroyed: used until the process ends
  return cache->get({&conv_weight, &norm.weight, &norm.bias, &norm.running_mean, &norm.running_var}, norm.eps, fold);
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
