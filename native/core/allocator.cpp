#include "allocator.h"

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace densetorch {

namespace {

constexpr std::size_t kAlignment = 64;  // as c10's gAlignment (AVX-512 lines)

// The block's malloc base is stored just before the aligned pointer.
void free_aligned(void* data) {
  if (data == nullptr) return;
  void* base;
  std::memcpy(&base, static_cast<char*>(data) - sizeof(void*), sizeof(void*));
  std::free(base);
}

class AlignedMallocAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(std::size_t n) override {
    if (n == 0) return {nullptr, nullptr, &free_aligned, c10::Device(c10::DeviceType::CPU)};
    void* base = std::malloc(n + kAlignment + sizeof(void*));
    TORCH_CHECK(base != nullptr, "densetorch: out of memory allocating ", n, " bytes");
    const auto start = reinterpret_cast<std::uintptr_t>(base) + sizeof(void*);
    void* data = reinterpret_cast<void*>((start + kAlignment - 1) & ~(kAlignment - 1));
    std::memcpy(static_cast<char*>(data) - sizeof(void*), &base, sizeof(void*));
    return {data, data, &free_aligned, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &free_aligned; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }
};

}  // namespace

void install_cpu_allocator() {
  static AlignedMallocAllocator allocator;
  c10::SetCPUAllocator(&allocator, /*priority=*/1);
}

}  // namespace densetorch
