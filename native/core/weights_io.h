// State dicts and weight files: safetensors (read/write) and PyTorch .pth state dicts (read).
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace densetorch {

// Named tensors in a fixed order (torchvision's order for our modules).
using NamedTensors = std::vector<std::pair<std::string, at::Tensor>>;
using Metadata = std::vector<std::pair<std::string, std::string>>;

// Parameters and buffers of `module` (names as torchvision's state_dict), detached, sharing memory.
NamedTensors state_dict(const torch::nn::Module& module);

// Checks `tensors` against the module's state dict and copies them in. Throws std::invalid_argument
// listing missing and unexpected keys (when strict) and shape mismatches (always) before copying
// anything, so a failed load leaves the module unchanged.
void load_state_dict(torch::nn::Module& module, const NamedTensors& tensors, bool strict);

struct WeightFile {
  NamedTensors tensors;
  Metadata metadata;
};

// safetensors: https://github.com/huggingface/safetensors (format). Writes `path` atomically
// (a temporary file in the same folder, flushed, then renamed). Device tensors are copied to the CPU.
void save_safetensors(const std::string& path, const NamedTensors& tensors, const Metadata& metadata);
WeightFile load_safetensors(const std::string& path);

// A state dict written by torch.save(model.state_dict(), path) (zip format), read by a restricted
// unpickler that accepts only what a state dict needs.
WeightFile load_pth(const std::string& path);

// Either format, chosen by the file's first bytes.
WeightFile load_weights(const std::string& path);

}  // namespace densetorch
