// Tensor creation from raw host bytes and copies back, dtype names, runtime facts.
// Plain C++20 + LibTorch: no N-API here.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace densetorch {

// The dtypes that cross the JS boundary, named as the TS API names them.
at::ScalarType dtype_from_name(std::string_view name);
std::string dtype_name(at::ScalarType type);

// Parses 'cpu', 'cuda' or 'cuda:N'; throws std::invalid_argument otherwise, and
// std::runtime_error when CUDA is asked for but not available.
at::Device parse_device(std::string_view name);
std::string device_name(const at::Device& device);

// Copies `nbytes` from `data` into a new tensor of `shape` and `source` dtype, then converts
// it to `target` dtype and `device`. Checks that nbytes matches the shape.
at::Tensor tensor_from_bytes(const void* data, std::size_t nbytes, const std::vector<int64_t>& shape,
                             at::ScalarType source, at::ScalarType target, const at::Device& device);

// Copies the tensor's elements (row-major, contiguous) into `out`, which must hold exactly
// t.numel() * element size bytes. Moves device tensors to the host first.
void copy_to_bytes(const at::Tensor& t, void* out, std::size_t nbytes);

// Bytes of host memory owned by this tensor's storage (0 for device tensors).
int64_t host_bytes(const at::Tensor& t);

struct RuntimeInfo {
  std::string libtorch_version;  // the version the addon was compiled against
  bool cuda_available;
  int cuda_device_count;
};
RuntimeInfo runtime_info();

// The CUDA caching allocator's counters for device `index` (bytes, all pools together): what
// tensors hold now and at most since the last reset, and what the cache holds from the driver.
// Each throws std::runtime_error when CUDA is not available and std::out_of_range for an index
// past the devices.
struct DeviceMemoryStats {
  int64_t allocated, peak_allocated, reserved, peak_reserved, alloc_retries, ooms;
};
DeviceMemoryStats cuda_memory_stats(int index);
void cuda_reset_peak_memory_stats(int index);
// Returns the cache's unused blocks to the driver.
void cuda_empty_cache();
// Waits until every kernel queued on device `index` has finished.
void cuda_synchronize(int index);

// Whether float32 convolutions (cuDNN) and matrix products (cuBLAS) on CUDA may round their
// inputs to TF32. LibTorch's defaults: convolutions yes, matrix products no.
void set_allow_tf32(bool allow);
bool allow_tf32();

// Turns off backends this CPU cannot run: NNPACK, when it cannot initialise here, would be
// asked (and warn on stderr) for every small-batch convolution, e.g. each batch-1 request of a
// server. The availability check itself runs with warnings silenced. Call once at load.
void disable_unusable_backends();

void manual_seed(uint64_t seed);

}  // namespace densetorch
