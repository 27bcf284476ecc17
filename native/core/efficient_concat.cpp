#include "efficient_concat.h"

#include <tuple>

namespace densetorch {

at::Tensor cat_features(at::TensorList features) { return features.size() == 1 ? features[0] : at::cat(features, 1); }

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Recomputes relu(batch_norm(x)) from the saved batch statistics, as the CPU kernel does:
// y = x * (weight * invstd) + (bias - mean * weight * invstd), in the dtype `compute`.
at::Tensor recompute_norm_relu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                               const at::Tensor& mean, const at::Tensor& invstd, at::ScalarType compute) {
  const at::Tensor scale = weight * invstd;
  const at::Tensor shift = bias - mean * scale;
  // x first, so that the result keeps x's memory format (channels-last) for the conv backward.
  at::Tensor y = x * scale.view({1, -1, 1, 1});
  return y.add_(shift.view({1, -1, 1, 1})).relu_().to(compute);
}

// pool x pool average pooling (stride pool), or x itself for pool 1.
at::Tensor pooled(const at::Tensor& x, int64_t pool) { return pool > 1 ? at::avg_pool2d(x, pool, pool) : x; }

// Training-mode relu(batch_norm(x)) -> [average pool ->] conv, returning the batch statistics
// that backward needs.
struct NormReluConvOut {
  at::Tensor out, mean, invstd;
};
NormReluConvOut norm_relu_conv(const at::Tensor& x, const NormArgs& norm, const at::Tensor& conv_weight, int64_t padding,
                               int64_t pool = 1) {
  auto [normed, mean, invstd] = at::native_batch_norm(x, norm.weight, norm.bias, norm.running_mean, norm.running_var,
                                                      /*training=*/true, norm.momentum, norm.eps);
  normed.relu_();
  return {at::conv2d(pooled(normed, pool), conv_weight, /*bias=*/{}, /*stride=*/1, /*padding=*/padding), mean, invstd};
}

struct NormReluConvGrads {
  at::Tensor input, norm_weight, norm_bias, conv_weight;
};
// Backward of conv([pool](relu(batch_norm(x)))) given the gradient of its output, recomputing the BN and
// ReLU outputs in the dtype the convolution ran in (bfloat16/float16 under autocast, else float32;
// the casts are no-ops then).
NormReluConvGrads norm_relu_conv_backward(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& norm_weight,
                                          const at::Tensor& norm_bias, const at::Tensor& mean, const at::Tensor& invstd,
                                          double eps, const at::Tensor& conv_weight, int64_t padding,
                                          int64_t pool = 1) {
  const at::ScalarType compute = grad.scalar_type();
  at::Tensor normed = recompute_norm_relu(x, norm_weight, norm_bias, mean, invstd, compute);
  const at::Tensor grad_out = grad.contiguous(normed.suggest_memory_format());
  auto [grad_normed, grad_conv_weight, unused] = at::convolution_backward(
      grad_out, pooled(normed, pool), conv_weight.to(compute), /*bias_sizes=*/std::nullopt, /*stride=*/{1, 1},
      /*padding=*/{padding, padding}, /*dilation=*/{1, 1}, /*transposed=*/false, /*output_padding=*/{0, 0},
      /*groups=*/1, {true, true, false});
  if (pool > 1)
    grad_normed = at::avg_pool2d_backward(grad_normed, normed, {pool, pool}, {pool, pool}, {0, 0},
                                          /*ceil_mode=*/false, /*count_include_pad=*/true, std::nullopt);
  at::threshold_backward_out(grad_normed, grad_normed, normed, 0);  // ReLU's backward in place: one tensor less at the peak
  normed.reset();
  grad_normed = grad_normed.to(x.scalar_type());
  auto [grad_x, grad_norm_weight, grad_norm_bias] = at::native_batch_norm_backward(
      grad_normed, x, norm_weight, /*running_mean=*/{}, /*running_var=*/{}, mean, invstd, /*train=*/true, eps,
      {true, true, true});
  return {grad_x, grad_norm_weight, grad_norm_bias, grad_conv_weight.to(conv_weight.scalar_type())};
}

// Gradients of the features from the gradient of their concatenation.
variable_list split_features(const at::Tensor& grad_x, at::TensorList features, AutogradContext* ctx) {
  std::vector<int64_t> channels;
  channels.reserve(features.size());
  for (const auto& f : features) channels.push_back(f.size(1));
  variable_list grads = grad_x.split_with_sizes(channels, 1);
  for (std::size_t i = 0; i < features.size(); ++i)
    if (!ctx->needs_input_grad(i)) grads[i] = at::Tensor();
  return grads;
}

// conv(relu(batch_norm(cat(features)))): saves the features and the batch statistics only.
struct ConcatNormReluConv : public torch::autograd::Function<ConcatNormReluConv> {
  // Inputs, in the order backward returns their gradients: features..., norm weight, norm bias,
  // running mean, running var, conv weight, then the non-tensor arguments.
  static at::Tensor forward(AutogradContext* ctx, at::TensorList features, const at::Tensor& norm_weight,
                            const at::Tensor& norm_bias, const at::Tensor& running_mean, const at::Tensor& running_var,
                            const at::Tensor& conv_weight, double momentum, double eps, int64_t padding,
                            int64_t pool) {
    auto r = norm_relu_conv(cat_features(features), {norm_weight, norm_bias, running_mean, running_var, momentum, eps},
                            conv_weight, padding, pool);
    variable_list saved(features.begin(), features.end());
    saved.insert(saved.end(), {norm_weight, norm_bias, conv_weight});
    ctx->save_for_backward(saved);
    ctx->saved_data["count"] = static_cast<int64_t>(features.size());
    ctx->saved_data["mean"] = r.mean;
    ctx->saved_data["invstd"] = r.invstd;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["pool"] = pool;
    return r.out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const auto count = static_cast<std::size_t>(ctx->saved_data["count"].toInt());
    const at::TensorList features(saved.data(), count);
    auto g = norm_relu_conv_backward(grad_outputs[0], cat_features(features), saved[count], saved[count + 1],
                                     ctx->saved_data["mean"].toTensor(), ctx->saved_data["invstd"].toTensor(),
                                     ctx->saved_data["eps"].toDouble(), saved[count + 2], ctx->saved_data["padding"].toInt(),
                                     ctx->saved_data["pool"].toInt());
    variable_list grads = split_features(g.input, features, ctx);
    // norm weight, norm bias, running mean, running var, conv weight, momentum, eps, padding, pool
    grads.insert(grads.end(), {g.norm_weight, g.norm_bias, {}, {}, g.conv_weight, {}, {}, {}, {}});
    return grads;
  }
};

// A whole bottleneck layer, conv2(relu(norm2(conv1(relu(norm1(cat(features))))))): saves the
// features, the 1x1 convolution's output and both batch statistics; the concatenation and both
// BN + ReLU outputs are recomputed in backward.
struct BottleneckLayer : public torch::autograd::Function<BottleneckLayer> {
  // Inputs: features..., norm1 weight, bias, running mean, running var, conv1 weight,
  // norm2 weight, bias, running mean, running var, conv2 weight, momentum1, momentum2, eps1, eps2.
  static at::Tensor forward(AutogradContext* ctx, at::TensorList features, const at::Tensor& n1_weight,
                            const at::Tensor& n1_bias, const at::Tensor& n1_mean, const at::Tensor& n1_var,
                            const at::Tensor& conv1_weight, const at::Tensor& n2_weight, const at::Tensor& n2_bias,
                            const at::Tensor& n2_mean, const at::Tensor& n2_var, const at::Tensor& conv2_weight,
                            double momentum1, double momentum2, double eps1, double eps2) {
    auto r1 = norm_relu_conv(cat_features(features), {n1_weight, n1_bias, n1_mean, n1_var, momentum1, eps1}, conv1_weight, 0);
    auto r2 = norm_relu_conv(r1.out, {n2_weight, n2_bias, n2_mean, n2_var, momentum2, eps2}, conv2_weight, 1);
    variable_list saved(features.begin(), features.end());
    saved.insert(saved.end(), {n1_weight, n1_bias, conv1_weight, r1.out, n2_weight, n2_bias, conv2_weight});
    ctx->save_for_backward(saved);
    ctx->saved_data["count"] = static_cast<int64_t>(features.size());
    ctx->saved_data["mean1"] = r1.mean;
    ctx->saved_data["invstd1"] = r1.invstd;
    ctx->saved_data["mean2"] = r2.mean;
    ctx->saved_data["invstd2"] = r2.invstd;
    ctx->saved_data["eps1"] = eps1;
    ctx->saved_data["eps2"] = eps2;
    return r2.out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const auto count = static_cast<std::size_t>(ctx->saved_data["count"].toInt());
    const at::TensorList features(saved.data(), count);
    auto g2 = norm_relu_conv_backward(grad_outputs[0], saved[count + 3], saved[count + 4], saved[count + 5],
                                      ctx->saved_data["mean2"].toTensor(), ctx->saved_data["invstd2"].toTensor(),
                                      ctx->saved_data["eps2"].toDouble(),
                                      saved[count + 6], 1);
    auto g1 = norm_relu_conv_backward(g2.input, cat_features(features), saved[count], saved[count + 1],
                                      ctx->saved_data["mean1"].toTensor(), ctx->saved_data["invstd1"].toTensor(),
                                      ctx->saved_data["eps1"].toDouble(),
                                      saved[count + 2], 0);
    variable_list grads = split_features(g1.input, features, ctx);
    grads.insert(grads.end(), {g1.norm_weight, g1.norm_bias, {}, {}, g1.conv_weight,
                               g2.norm_weight, g2.norm_bias, {}, {}, g2.conv_weight, {}, {}, {}, {}});
    return grads;
  }
};

}  // namespace

at::Tensor efficient_concat_norm_relu_conv(at::TensorList features, const NormArgs& norm, const at::Tensor& conv_weight,
                                           int64_t padding, int64_t pool) {
  return ConcatNormReluConv::apply(features, norm.weight, norm.bias, norm.running_mean, norm.running_var, conv_weight,
                                   norm.momentum, norm.eps, padding, pool);
}

at::Tensor efficient_bottleneck_layer(at::TensorList features, const NormArgs& norm1, const at::Tensor& conv1_weight,
                                      const NormArgs& norm2, const at::Tensor& conv2_weight) {
  return BottleneckLayer::apply(features, norm1.weight, norm1.bias, norm1.running_mean, norm1.running_var, conv1_weight,
                                norm2.weight, norm2.bias, norm2.running_mean, norm2.running_var, conv2_weight,
                                norm1.momentum, norm2.momentum, norm1.eps, norm2.eps);
}

}  // namespace densetorch
