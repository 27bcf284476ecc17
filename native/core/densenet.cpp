#include "densenet.h"

#include "efficient_concat.h"
#include "fused_block.h"

#include <cmath>
#include <stdexcept>

namespace densetorch {

namespace nn = torch::nn;

namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).bias(false));
}

// Training with autograd: the case where the memory-efficient path saves memory.
bool records_graph(const nn::Module& m) { return m.is_training() && at::GradMode::is_enabled(); }

// BatchNorm2d's bookkeeping when its forward is done by hand: count the batch and return the
// factor BatchNorm2d would use for the running averages.
double count_batch(nn::BatchNorm2d& norm) {
  torch::NoGradGuard no_grad;
  norm->num_batches_tracked += 1;
  const auto& momentum = norm->options.momentum();
  return momentum.has_value() ? *momentum : 1.0 / norm->num_batches_tracked.item<double>();
}

}  // namespace

void validate(const DenseNetConfig& c) {
  auto positive = [](int64_t v, const char* name) {
    if (v < 1) throw std::out_of_range(std::string(name) + " must be >= 1, got " + std::to_string(v));
  };
  positive(c.growth_rate, "growthRate");
  positive(c.num_init_features, "numInitFeatures");
  positive(c.num_classes, "numClasses");
  positive(c.in_channels, "inChannels");
  if (c.block_config.empty()) throw std::out_of_range("blockConfig must have at least one block");
  for (auto n : c.block_config) positive(n, "blockConfig entries");
  if (c.bn_size < 0) throw std::out_of_range("bnSize must be >= 0, got " + std::to_string(c.bn_size));
  if (!(c.compression > 0.0 && c.compression <= 1.0))
    throw std::out_of_range("compression must be in (0, 1], got " + std::to_string(c.compression));
  if (!(c.drop_rate >= 0.0 && c.drop_rate < 1.0))
    throw std::out_of_range("dropRate must be in [0, 1), got " + std::to_string(c.drop_rate));
}

DenseLayerImpl::DenseLayerImpl(int64_t in_channels, int64_t growth_rate, int64_t bn_size, double drop_rate,
                               bool memory_efficient)
    : padding1_(bn_size > 0 ? 0 : 1), drop_rate_(drop_rate), memory_efficient_(memory_efficient) {
  norm1 = register_module("norm1", nn::BatchNorm2d(in_channels));
  if (bn_size > 0) {
    conv1 = register_module("conv1", conv(in_channels, bn_size * growth_rate, 1));
    norm2 = register_module("norm2", nn::BatchNorm2d(bn_size * growth_rate));
    conv2 = register_module("conv2", conv(bn_size * growth_rate, growth_rate, 3, 1, 1));
  } else {
    conv1 = register_module("conv1", conv(in_channels, growth_rate, 3, 1, 1));
  }
}

namespace {

NormArgs norm_args(nn::BatchNorm2d& norm) {
  const double momentum = count_batch(norm);
  return {norm->weight, norm->bias, norm->running_mean, norm->running_var, momentum, norm->options.eps()};
}

// Evaluation: the running statistics, no momentum.
NormArgs eval_norm_args(const nn::BatchNorm2d& norm) {
  return {norm->weight, norm->bias, norm->running_mean, norm->running_var, 0.0, norm->options.eps()};
}

}  // namespace

at::Tensor DenseLayerImpl::forward(const std::vector<at::Tensor>& features) {
  at::Tensor out;
  if (memory_efficient_ && records_graph(*this)) {
    out = conv2 ? efficient_bottleneck_layer(features, norm_args(norm1), conv1->weight, norm_args(norm2), conv2->weight)
                : efficient_concat_norm_relu_conv(features, norm_args(norm1), conv1->weight, padding1_);
  } else if (conv2 && !is_training() && !at::GradMode::is_enabled()) {
    // Inference: norm2 folded into conv1, so the 4k-channel bottleneck is written once, not
    // normalised in a second pass.
    at::Tensor x = cat_features(features);
    const FoldedConv folded = fold_norm_into_conv(conv1->weight, eval_norm_args(norm2));
    out = conv2->forward(at::conv2d(norm1->forward(x).relu_(), folded.weight, folded.bias).relu_());
  } else {
    at::Tensor x = cat_features(features);
    out = conv1->forward(norm1->forward(x).relu_());  // in place: batch norm backward needs its input, not its output
    if (conv2) out = conv2->forward(norm2->forward(out).relu_());
  }
  if (drop_rate_ > 0) out = torch::dropout(out, drop_rate_, is_training());
  return out;
}

DenseBlockImpl::DenseBlockImpl(int64_t num_layers, int64_t in_channels, int64_t growth_rate, int64_t bn_size,
                               double drop_rate, bool memory_efficient)
    : growth_rate_(growth_rate), drop_rate_(drop_rate), memory_efficient_(memory_efficient) {
  for (int64_t i = 0; i < num_layers; ++i) {
    layers_.push_back(register_module("denselayer" + std::to_string(i + 1),
                                      DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size, drop_rate,
                                                 memory_efficient)));
  }
}

// The fused block (fused_block.h) covers the CPU float32 cases without dropout: training (with or
// without autograd) and evaluation without autograd. Evaluation with autograd (gradients of an
// input in eval mode) and everything else runs layer by layer.
bool DenseBlockImpl::runs_fused(const at::Tensor& x) const {
  return drop_rate_ == 0 && !layers_.empty() && fused_block_supported(x, is_training(), layers_[0]->norm1->weight) &&
         (is_training() || !at::GradMode::is_enabled());
}

at::Tensor DenseBlockImpl::forward(const at::Tensor& x) {
  if (runs_fused(x)) {
    std::vector<FusedLayerArgs> args;
    args.reserve(layers_.size());
    for (auto& layer : layers_) {
      auto& l = *layer;
      FusedLayerArgs a{is_training() ? norm_args(l.norm1) : eval_norm_args(l.norm1), l.conv1->weight, l.padding1_,
                       std::nullopt, {}};
      if (l.conv2) {
        a.norm2 = is_training() ? norm_args(l.norm2) : eval_norm_args(l.norm2);
        a.conv2_weight = l.conv2->weight;
      }
      args.push_back(std::move(a));
    }
    return fused_dense_block(x, args, growth_rate_, is_training(), memory_efficient_);
  }
  if (!at::GradMode::is_enabled()) return forward_into_buffer(x);
  std::vector<at::Tensor> features{x};
  features.reserve(layers_.size() + 1);
  for (auto& layer : layers_) features.push_back(layer->forward(features));
  return torch::cat(features, 1);
}

// Without autograd (inference): one buffer holds every feature map of the block. Each layer reads
// the channels before its own as a view of the buffer (batch norm reads it strided and writes a
// new contiguous tensor anyway) and writes its k new channels into its slice: no torch::cat, whose
// copies grow with the square of the depth, and one large allocation per block instead of one
// per layer.
at::Tensor DenseBlockImpl::forward_into_buffer(const at::Tensor& x) {
  const int64_t in_channels = x.size(1);
  const int64_t total = in_channels + static_cast<int64_t>(layers_.size()) * growth_rate_;
  at::Tensor buffer = at::empty({x.size(0), total, x.size(2), x.size(3)},
                                x.options().memory_format(x.suggest_memory_format()));
  buffer.narrow(1, 0, in_channels).copy_(x);
  int64_t channels = in_channels;
  for (auto& layer : layers_) {
    at::Tensor out = layer->forward({buffer.narrow(1, 0, channels)});
    buffer.narrow(1, channels, out.size(1)).copy_(out);
    channels += out.size(1);
  }
  return buffer;
}

TransitionImpl::TransitionImpl(int64_t in_channels, int64_t out_channels, bool memory_efficient)
    : memory_efficient_(memory_efficient) {
  norm = register_module("norm", nn::BatchNorm2d(in_channels));
  conv = register_module("conv", densetorch::conv(in_channels, out_channels, 1));
}

at::Tensor TransitionImpl::forward(const at::Tensor& x) {
  // Average pooling and a 1x1 convolution without bias commute (both are linear, the one over
  // pixels, the other over channels): pooling first gives torchvision's result with a quarter of
  // the convolution's work and memory. Training on the CPU: batch norm, ReLU and pooling as one
  // pass, forward and backward (fused_block.h). Memory-efficient training elsewhere keeps the
  // block's output (alive anyway) and the statistics, and recomputes the BN + ReLU output in
  // backward, as the dense layers do.
  if (is_training() && fused_block_supported(x, /*training=*/true, norm->weight))
    return fused_transition(x, norm_args(norm), conv->weight, /*keep_pooled=*/!memory_efficient_);
  if (memory_efficient_ && records_graph(*this))
    return efficient_concat_norm_relu_conv({x}, norm_args(norm), conv->weight, /*padding=*/0, /*pool=*/2);
  // Inference on the CPU: batch norm, ReLU and pooling as one pass, then the convolution (fused_block.h).
  if (!is_training() && !at::GradMode::is_enabled() && fused_block_supported(x, /*training=*/false, norm->weight))
    return eval_transition(x, eval_norm_args(norm), conv->weight);
  return conv->forward(torch::avg_pool2d(norm->forward(x).relu_(), 2, 2));
}

DenseNetImpl::DenseNetImpl(DenseNetConfig config) : config_(std::move(config)) {
  validate(config_);
  const auto& c = config_;
  features = nn::Sequential();
  if (c.stem == Stem::kImageNet) {
    features->push_back("conv0", conv(c.in_channels, c.num_init_features, 7, 2, 3));
    features->push_back("norm0", nn::BatchNorm2d(c.num_init_features));
    features->push_back("relu0", nn::ReLU(nn::ReLUOptions(true)));
    features->push_back("pool0", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  } else {
    features->push_back("conv0", conv(c.in_channels, c.num_init_features, 3, 1, 1));
  }
  int64_t channels = c.num_init_features;
  for (std::size_t i = 0; i < c.block_config.size(); ++i) {
    const int64_t layers = c.block_config[i];
    features->push_back("denseblock" + std::to_string(i + 1),
                        DenseBlock(layers, channels, c.growth_rate, c.bn_size, c.drop_rate, c.memory_efficient));
    channels += layers * c.growth_rate;
    if (i + 1 != c.block_config.size()) {
      const auto out = static_cast<int64_t>(std::floor(c.compression * static_cast<double>(channels)));
      features->push_back("transition" + std::to_string(i + 1), Transition(channels, out, c.memory_efficient));
      channels = out;
    }
  }
  features->push_back("norm5", nn::BatchNorm2d(channels));
  register_module("features", features);
  classifier = register_module("classifier", nn::Linear(channels, c.num_classes));

  // torchvision's initialisation.
  torch::NoGradGuard no_grad;
  for (auto& m : modules(/*include_self=*/false)) {
    if (auto* cv = m->as<nn::Conv2d>()) {
      nn::init::kaiming_normal_(cv->weight);
    } else if (auto* bn = m->as<nn::BatchNorm2d>()) {
      nn::init::ones_(bn->weight);
      nn::init::zeros_(bn->bias);
    } else if (auto* lin = m->as<nn::Linear>()) {
      nn::init::zeros_(lin->bias);
    }
  }
  // Channels-last (NHWC) activations and weights: oneDNN's convolutions and the channels-last
  // BN/ReLU kernels are faster on it (measured +16% training, +25-40% inference on CPU). Weights
  // keep this layout through to(), optimizers and loads; files and state dicts are row-major.
  for (auto& p : parameters())
    if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
}

int64_t min_input_size(const DenseNetConfig& c) {
  auto final_size = [&](int64_t s) {
    if (c.stem == Stem::kImageNet) {
      s = (s - 1) / 2 + 1;  // conv0: 7x7, stride 2, padding 3
      s = (s - 1) / 2 + 1;  // pool0: 3x3 max pool, stride 2, padding 1
    }
    for (std::size_t t = 1; t < c.block_config.size(); ++t) s /= 2;  // transitions: 2x2 average pool
    return s;
  };
  int64_t s = 1;
  while (final_size(s) < 1) s *= 2;
  while (s > 1 && final_size(s - 1) >= 1) --s;
  return s;
}

void DenseNetImpl::check_image_sizes(c10::IntArrayRef sizes, const std::string& what) const {
  const std::string expected = "[N, " + std::to_string(config_.in_channels) + ", H, W]";
  if (sizes.size() != 4)
    throw std::invalid_argument(what + " must have shape " + expected + ", got a tensor of rank " + std::to_string(sizes.size()) +
                                " with shape " + c10::str(sizes));
  if (sizes[1] != config_.in_channels)
    throw std::invalid_argument(what + " must have shape " + expected + ", got " + std::to_string(sizes[1]) +
                                " channels (shape " + c10::str(sizes) + ")");
  const int64_t smallest = min_input_size(config_);
  if (sizes[2] < smallest || sizes[3] < smallest)
    throw std::out_of_range(what + " of " + std::to_string(sizes[2]) + "x" + std::to_string(sizes[3]) +
                            " pixels is too small for this model: its stem and " + std::to_string(config_.block_config.size() - 1) +
                            " transition(s) need at least " + std::to_string(smallest) + "x" + std::to_string(smallest));
}

void DenseNetImpl::check_input(const at::Tensor& x) const {
  check_image_sizes(x.sizes(), "input");
  const auto dtype = classifier->weight.scalar_type();
  if (x.scalar_type() != dtype)
    throw std::invalid_argument("input must have dtype " + std::string(c10::toString(dtype)) + " (as the model), got " +
                                std::string(c10::toString(x.scalar_type())));
  if (x.device() != classifier->weight.device())
    throw std::invalid_argument("input is on " + x.device().str() + " but the model is on " + classifier->weight.device().str());
  if (x.size(0) == 0) throw std::out_of_range("input must hold at least one image, got shape " + c10::str(x.sizes()));
}

at::Tensor DenseNetImpl::forward(const at::Tensor& x) {
  at::Tensor out = x.contiguous(at::MemoryFormat::ChannelsLast);
  auto module = features->begin();
  if (config_.stem == Stem::kImageNet) {
    out = (module++)->forward(out);  // conv0
    // On the CPU, norm0 + relu0 + pool0 in one pass (fused_block.h) where the fused block runs.
    nn::BatchNorm2d norm0(std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(features->ptr(1)));
    if (fused_block_supported(out, is_training(), norm0->weight) && (is_training() || !at::GradMode::is_enabled())) {
      out = fused_norm_relu_maxpool(out, is_training() ? norm_args(norm0) : eval_norm_args(norm0), is_training());
      module += 3;
    }
  }
  for (; module != features->end(); ++module) out = module->forward(out);
  out = torch::relu(out);
  out = torch::adaptive_avg_pool2d(out, {1, 1}).flatten(1);
  return classifier->forward(out);
}

int64_t DenseNetImpl::num_parameters() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

}  // namespace densetorch
