// DenseNet (Huang et al., CVPR 2017) as LibTorch modules, with submodule names that match
// torchvision's so that state dicts load across the two.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

namespace densetorch {

enum class Stem { kImageNet, kCifar };

struct DenseNetConfig {
  int64_t growth_rate = 32;
  std::vector<int64_t> block_config = {6, 12, 24, 16};
  int64_t num_init_features = 64;
  int64_t bn_size = 4;  // bottleneck width factor; 0 = plain layers (BN-ReLU-Conv3x3)
  double compression = 0.5;
  double drop_rate = 0.0;
  int64_t num_classes = 1000;
  int64_t in_channels = 3;
  Stem stem = Stem::kImageNet;
  bool memory_efficient = false;
};

// Throws std::invalid_argument / std::out_of_range naming the bad field.
void validate(const DenseNetConfig& config);

// The smallest height/width whose feature map is still at least 1x1 after the stem and every
// transition's 2x2 pooling.
int64_t min_input_size(const DenseNetConfig& config);

// One layer: BN-ReLU-Conv1x1(bn_size*k)-BN-ReLU-Conv3x3(k), or BN-ReLU-Conv3x3(k) without a
// bottleneck. Takes the list of earlier features and returns k new channels.
class DenseLayerImpl : public torch::nn::Module {
 public:
  DenseLayerImpl(int64_t in_channels, int64_t growth_rate, int64_t bn_size, double drop_rate, bool memory_efficient);
  at::Tensor forward(const std::vector<at::Tensor>& features);

 private:
  friend class DenseBlockImpl;  // runs its layers as one fused block where it can (fused_block.h)
  torch::nn::BatchNorm2d norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  int64_t padding1_;  // conv1's padding: 0 for the 1x1 bottleneck, 1 for a plain 3x3 layer
  double drop_rate_;
  bool memory_efficient_;
};
TORCH_MODULE(DenseLayer);

class DenseBlockImpl : public torch::nn::Module {
 public:
  DenseBlockImpl(int64_t num_layers, int64_t in_channels, int64_t growth_rate, int64_t bn_size, double drop_rate,
                 bool memory_efficient);
  // The block input followed by every layer's new features, [N, C + L*k, H, W].
  at::Tensor forward(const at::Tensor& x);

 private:
  at::Tensor forward_into_buffer(const at::Tensor& x);  // without autograd
  bool runs_fused(const at::Tensor& x) const;

  std::vector<DenseLayer> layers_;
  int64_t growth_rate_;
  double drop_rate_;
  bool memory_efficient_;
};
TORCH_MODULE(DenseBlock);

// BN-ReLU-Conv1x1-AvgPool2x2 between blocks.
class TransitionImpl : public torch::nn::Module {
 public:
  TransitionImpl(int64_t in_channels, int64_t out_channels, bool memory_efficient = false);
  at::Tensor forward(const at::Tensor& x);

 private:
  torch::nn::BatchNorm2d norm{nullptr};
  torch::nn::Conv2d conv{nullptr};
  bool memory_efficient_;
};
TORCH_MODULE(Transition);

class DenseNetImpl : public torch::nn::Module {
 public:
  explicit DenseNetImpl(DenseNetConfig config);
  // Logits of shape [N, num_classes] for input [N, in_channels, H, W].
  at::Tensor forward(const at::Tensor& x);
  const DenseNetConfig& config() const { return config_; }
  int64_t num_parameters() const;
  // Checks rank, channels, dtype, device and size of an input; throws std::invalid_argument /
  // std::out_of_range naming the expected shape.
  void check_input(const at::Tensor& x) const;
  // Checks that images of these sizes ([N, C, H, W]) fit the model: rank, channels, and height and
  // width of at least min_input_size(). `what` names them in the message ("input", "images").
  void check_image_sizes(c10::IntArrayRef sizes, const std::string& what) const;

 private:
  DenseNetConfig config_;
  torch::nn::Sequential features{nullptr};
  torch::nn::Linear classifier{nullptr};
};
TORCH_MODULE(DenseNet);

}  // namespace densetorch
