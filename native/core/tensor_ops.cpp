#include "tensor_ops.h"

#include <ATen/Context.h>
#include <ATen/ops/_nnpack_available.h>
#include <c10/core/CachingDeviceAllocator.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <c10/util/Logging.h>
#include <torch/cuda.h>
#include <torch/headeronly/version.h>
#include <torch/utils.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace densetorch {

namespace {
struct DtypeName {
  std::string_view name;
  at::ScalarType type;
};
constexpr DtypeName kDtypes[] = {
    {"float32", at::kFloat}, {"float64", at::kDouble}, {"int32", at::kInt},       {"int64", at::kLong},
    {"uint8", at::kByte},    {"float16", at::kHalf},   {"bfloat16", at::kBFloat16}, {"bool", at::kBool},
};
}  // namespace

at::ScalarType dtype_from_name(std::string_view name) {
  for (const auto& d : kDtypes)
    if (d.name == name) return d.type;
  throw std::invalid_argument("unknown dtype '" + std::string(name) + "'");
}

std::string dtype_name(at::ScalarType type) {
  for (const auto& d : kDtypes)
    if (d.type == type) return std::string(d.name);
  return std::string(c10::toString(type));
}

at::Device parse_device(std::string_view name) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    at::Device device(std::string{name});  // validates the 'cuda:N' form
    if (!torch::cuda::is_available())
      throw std::runtime_error("device '" + std::string(name) + "' requested but CUDA is not available");
    if (device.has_index() && device.index() >= static_cast<int>(torch::cuda::device_count()))
      throw std::runtime_error("device '" + std::string(name) + "' requested but only " +
                               std::to_string(torch::cuda::device_count()) + " CUDA device(s) exist");
    return device;
  }
  throw std::invalid_argument("unknown device '" + std::string(name) + "'");
}

std::string device_name(const at::Device& device) {
  if (device.is_cpu()) return "cpu";
  return device.str();
}

at::Tensor tensor_from_bytes(const void* data, std::size_t nbytes, const std::vector<int64_t>& shape,
                             at::ScalarType source, at::ScalarType target, const at::Device& device) {
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(source));
  const auto expected = static_cast<std::size_t>(t.numel()) * t.element_size();
  if (expected != nbytes)
    throw std::invalid_argument("data has " + std::to_string(nbytes) + " bytes but shape needs " + std::to_string(expected));
  if (nbytes > 0) std::memcpy(t.data_ptr(), data, nbytes);
  if (target != source) t = t.to(target);
  if (!device.is_cpu()) t = t.to(device);
  return t;
}

void copy_to_bytes(const at::Tensor& t, void* out, std::size_t nbytes) {
  at::Tensor host = t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
  const auto have = static_cast<std::size_t>(host.numel()) * host.element_size();
  if (have != nbytes)
    throw std::invalid_argument("destination has " + std::to_string(nbytes) + " bytes but tensor has " + std::to_string(have));
  if (nbytes > 0) std::memcpy(out, host.data_ptr(), nbytes);
}

int64_t host_bytes(const at::Tensor& t) {
  if (!t.defined() || !t.device().is_cpu() || !t.has_storage()) return 0;
  return static_cast<int64_t>(t.storage().nbytes());
}

RuntimeInfo runtime_info() {
  const bool cuda = torch::cuda::is_available();
  return RuntimeInfo{TORCH_VERSION, cuda, cuda ? static_cast<int>(torch::cuda::device_count()) : 0};
}

namespace {
c10::DeviceIndex cuda_index(int index) {
  if (!torch::cuda::is_available()) throw std::runtime_error("CUDA is not available");
  const auto count = static_cast<int>(torch::cuda::device_count());
  if (index < 0 || index >= count)
    throw std::out_of_range("CUDA device " + std::to_string(index) + " does not exist (" + std::to_string(count) +
                            " device(s))");
  return static_cast<c10::DeviceIndex>(index);
}
}  // namespace

DeviceMemoryStats cuda_memory_stats(int index) {
  const auto s = c10::getDeviceAllocator(c10::kCUDA)->getDeviceStats(cuda_index(index));
  constexpr std::size_t kAll = 0;  // StatType::AGGREGATE: every pool together
  return {s.allocated_bytes[kAll].current, s.allocated_bytes[kAll].peak, s.reserved_bytes[kAll].current,
          s.reserved_bytes[kAll].peak,      s.num_alloc_retries,          s.num_ooms};
}

void cuda_reset_peak_memory_stats(int index) {
  c10::getDeviceAllocator(c10::kCUDA)->resetPeakStats(cuda_index(index));
}

void cuda_empty_cache() {
  cuda_index(0);
  c10::getDeviceAllocator(c10::kCUDA)->emptyCache();
}

void cuda_synchronize(int index) {
  c10::impl::getDeviceGuardImpl(c10::kCUDA)->synchronizeDevice(cuda_index(index));
}

void set_allow_tf32(bool allow) {
  at::globalContext().setAllowTF32CuDNN(allow);
  at::globalContext().setAllowTF32CuBLAS(allow);
}

bool allow_tf32() { return at::globalContext().allowTF32CuDNN(); }

void manual_seed(uint64_t seed) { torch::manual_seed(seed); }

void disable_unusable_backends() {
  const int level = FLAGS_caffe2_log_level;
  FLAGS_caffe2_log_level = std::max(level, 2);  // errors only, while asking
  const bool nnpack = at::_nnpack_available();
  FLAGS_caffe2_log_level = level;
  if (!nnpack) at::globalContext().setUserEnabledNNPACK(false);
}

}  // namespace densetorch
