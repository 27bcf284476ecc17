#include "efficient_concat.h"

#include <tuple>

namespace densetorch {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// Recomputes relu(batch_norm(x)) from the saved batch statistics, as the CPU kernel does:
// y = x * (weight * invstd) + (bias - mean * weight * invstd).
at::Tensor recompute_norm_relu(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias,
                               const at::Tensor& mean, const at::Tensor& invstd) {
  const at::Tensor scale = weight * invstd;
  const at::Tensor shift = bias - mean * scale;
  // x first, so that the result keeps x's memory format (channels-last) for the conv backward.
  at::Tensor y = x * scale.view({1, -1, 1, 1});
  return y.add_(shift.view({1, -1, 1, 1})).relu_();
}

struct ConcatNormReluConv : public torch::autograd::Function<ConcatNormReluConv> {
  // Inputs, in the order backward returns their gradients: features..., norm weight, norm bias,
  // running mean, running var, conv weight, then the non-tensor arguments.
  static at::Tensor forward(AutogradContext* ctx, at::TensorList features, const at::Tensor& norm_weight,
                            const at::Tensor& norm_bias, const at::Tensor& running_mean, const at::Tensor& running_var,
                            const at::Tensor& conv_weight, double momentum, double eps, int64_t padding) {
    at::Tensor x = at::cat(features, 1);
    auto [normed, save_mean, save_invstd] =
        at::native_batch_norm(x, norm_weight, norm_bias, running_mean, running_var, /*training=*/true, momentum, eps);
    x.reset();  // the concatenation is not kept
    normed.relu_();
    at::Tensor out = at::conv2d(normed, conv_weight, /*bias=*/{}, /*stride=*/1, /*padding=*/padding);

    variable_list saved(features.begin(), features.end());
    saved.push_back(norm_weight);
    saved.push_back(norm_bias);
    saved.push_back(conv_weight);
    ctx->save_for_backward(saved);
    ctx->saved_data["count"] = static_cast<int64_t>(features.size());
    ctx->saved_data["mean"] = save_mean;
    ctx->saved_data["invstd"] = save_invstd;
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["padding"] = padding;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const variable_list saved = ctx->get_saved_variables();
    const auto count = static_cast<std::size_t>(ctx->saved_data["count"].toInt());
    const at::TensorList features(saved.data(), count);
    const at::Tensor& norm_weight = saved[count];
    const at::Tensor& norm_bias = saved[count + 1];
    const at::Tensor& conv_weight = saved[count + 2];
    const at::Tensor mean = ctx->saved_data["mean"].toTensor();
    const at::Tensor invstd = ctx->saved_data["invstd"].toTensor();
    const double eps = ctx->saved_data["eps"].toDouble();
    const int64_t padding = ctx->saved_data["padding"].toInt();

    // Recompute what forward did not keep, in the dtype the convolution ran in (bfloat16/float16
    // under autocast, else float32; the casts are no-ops then).
    const at::ScalarType compute = grad_outputs[0].scalar_type();
    at::Tensor x = at::cat(features, 1);
    at::Tensor normed = recompute_norm_relu(x, norm_weight, norm_bias, mean, invstd).to(compute);

    const at::Tensor grad_out = grad_outputs[0].contiguous(normed.suggest_memory_format());
    auto [grad_normed, grad_conv_weight, grad_conv_bias] = at::convolution_backward(
        grad_out, normed, conv_weight.to(compute), /*bias_sizes=*/std::nullopt, /*stride=*/{1, 1},
        /*padding=*/{padding, padding}, /*dilation=*/{1, 1}, /*transposed=*/false, /*output_padding=*/{0, 0},
        /*groups=*/1, {true, true, false});
    grad_normed = at::threshold_backward(grad_normed, normed, 0).to(x.scalar_type());
    grad_conv_weight = grad_conv_weight.to(conv_weight.scalar_type());
    normed.reset();
    auto [grad_x, grad_norm_weight, grad_norm_bias] = at::native_batch_norm_backward(
        grad_normed, x, norm_weight, /*running_mean=*/{}, /*running_var=*/{}, mean, invstd, /*train=*/true, eps,
        {true, true, true});
    x.reset();

    std::vector<int64_t> channels;
    channels.reserve(count);
    for (const auto& f : features) channels.push_back(f.size(1));
    variable_list grads = grad_x.split_with_sizes(channels, 1);
    for (std::size_t i = 0; i < count; ++i)
      if (!ctx->needs_input_grad(i)) grads[i] = at::Tensor();
    grads.push_back(grad_norm_weight);
    grads.push_back(grad_norm_bias);
    grads.push_back(at::Tensor());  // running mean
    grads.push_back(at::Tensor());  // running var
    grads.push_back(grad_conv_weight);
    grads.push_back(at::Tensor());  // momentum
    grads.push_back(at::Tensor());  // eps
    grads.push_back(at::Tensor());  // padding
    return grads;
  }
};

}  // namespace

at::Tensor efficient_concat_norm_relu_conv(at::TensorList features, const at::Tensor& norm_weight,
                                           const at::Tensor& norm_bias, const ConcatNormArgs& norm,
                                           const at::Tensor& conv_weight, int64_t padding) {
  return ConcatNormReluConv::apply(features, norm_weight, norm_bias, norm.running_mean, norm.running_var, conv_weight,
                                   norm.momentum, norm.eps, padding);
}

}  // namespace densetorch
