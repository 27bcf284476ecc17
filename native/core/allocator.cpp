#include "allocator.h"
#include "env_switches.h"

#include <c10/core/CPUAllocator.h>
#include <c10/util/Exception.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <sys/mman.h>
#if defined(__GLIBC__)
#include <malloc.h>  // malloc_trim: glibc only
#endif

namespace densetorch {

namespace {

constexpr std::size_t kAlignment = 64;  // as c10's gAlignment (AVX-512 lines)
constexpr std::size_t kHugePage = 2u << 20;

// Large blocks (activations of a batch) come from fresh mmaps whose every 4 KiB page faults on
// first touch; where transparent huge pages are opt-in ("madvise"), ask for 2 MiB pages on the
// aligned interior of the block: 512x fewer faults. Best effort: madvise failing changes nothing.
void advise_huge_pages(void* base, std::size_t size) {
  const auto begin = (reinterpret_cast<std::uintptr_t>(base) + kHugePage - 1) & ~(kHugePage - 1);
  const auto end = (reinterpret_cast<std::uintptr_t>(base) + size) & ~(kHugePage - 1);
#if defined(MADV_HUGEPAGE)  // Linux
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
#else
  (void)begin;
  (void)end;
#endif
}

// The heap large blocks come from while a training run is on (HeapReuseScope): address ranges
// mapped once and kept, best fit, freed ranges merged with their free neighbours. glibc's heap
// cannot be relied on for this: a thread's arena is fixed when it first allocates, Node's worker
// threads may be given one of the arenas its startup threads created (M_ARENA_MAX set at load time
// no longer changes that), and such an arena grows in heaps of at most 64 MiB that are unmapped
// when they empty, so a step's large activations were faulted in afresh on every step, in some
// processes and not others (DenseNet-121 batch 16: 8-17 thousand page faults per step and 4-5
// steps to a steady speed, vs none from the third step and a steady second step with one arena).
class RegionHeap {
 public:
  void* allocate(std::size_t n) {
    const std::lock_guard<std::mutex> lock(mutex_);
    auto it = by_size_.lower_bound(n);
    if (it == by_size_.end()) {
      grow(n);
      it = by_size_.lower_bound(n);
    }
    const std::uintptr_t begin = it->second;
    const std::size_t size = it->first;
    by_size_.erase(it);
    by_address_.erase(begin);
    if (size > n) insert(begin + n, size - n);
    return reinterpret_cast<void*>(begin);
  }

  void free(void* p, std::size_t n) {
    const std::lock_guard<std::mutex> lock(mutex_);
    merge(reinterpret_cast<std::uintptr_t>(p), n);
  }

  // Gives the free ranges' memory back to the system; their addresses stay reserved for reuse.
  void release() {
    const std::lock_guard<std::mutex> lock(mutex_);
    for (const auto& [begin, size] : by_address_) ::madvise(reinterpret_cast<void*>(begin), size, MADV_DONTNEED);
  }

 private:
  static constexpr std::size_t kGrowth = 64u << 20;  // mapped at least this much at a time

  // Adds a free range, merged with the free ranges it touches.
  void merge(std::uintptr_t begin, std::size_t size) {
    auto next = by_address_.find(begin + size);
    if (next != by_address_.end()) {
      size += next->second;
      erase(next);
    }
    auto after = by_address_.lower_bound(begin);
    if (after != by_address_.begin()) {
      auto prev = std::prev(after);
      if (prev->first + prev->second == begin) {
        begin = prev->first;
        size += prev->second;
        erase(prev);
      }
    }
    insert(begin, size);
  }

  void grow(std::size_t n) {
    const std::size_t length = std::max(n, kGrowth);
    void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    TORCH_CHECK(base != MAP_FAILED, "densetorch: out of memory mapping ", length, " bytes");
    advise_huge_pages(base, length);
    merge(reinterpret_cast<std::uintptr_t>(base), length);  // joins an adjacent earlier mapping
  }

  void insert(std::uintptr_t begin, std::size_t size) {
    by_address_.emplace(begin, size);
    by_size_.emplace(size, begin);
  }

  void erase(std::map<std::uintptr_t, std::size_t>::iterator it) {
    auto [first, last] = by_size_.equal_range(it->second);
    for (auto s = first; s != last; ++s)
      if (s->second == it->first) {
        by_size_.erase(s);
        break;
      }
    by_address_.erase(it);
  }

  std::mutex mutex_;
  std::map<std::uintptr_t, std::size_t> by_address_;     // free ranges: begin -> size
  std::multimap<std::size_t, std::uintptr_t> by_size_;  // the same ranges: size -> begin
};

// Constructed in static storage and never destroyed: tensors may be freed while the process
// exits, after static destructors ran.
RegionHeap& region_heap() {
  alignas(RegionHeap) static unsigned char storage[sizeof(RegionHeap)];
  static RegionHeap& heap = *::new (storage) RegionHeap;
  return heap;
}

constexpr std::size_t kPage = 4096;
// Blocks from 128 KiB up use the region heap in a run: glibc's default mmap threshold, so that
// without process-wide mallopt settings none of a step's blocks is mapped and unmapped by glibc
// (DenseNet-121 batch 16 memory-efficient: peak RSS 689 vs 783 MiB with 1 MiB here).
constexpr std::size_t kRegionBlock = 128u << 10;

// Two words before a block's aligned data: where it came from (kHeap: malloc, kMapped: its own
// mapping, kRegion: the region heap) and then the malloc base, the mapping's length or the
// region block's length.
enum : std::uintptr_t { kHeap = 0, kMapped = 1, kRegion = 2 };
constexpr std::size_t kHeader = 2 * sizeof(std::uintptr_t);

void write_header(void* data, std::uintptr_t kind, std::uintptr_t value) {
  const std::uintptr_t header[2] = {kind, value};
  std::memcpy(static_cast<char*>(data) - kHeader, header, kHeader);
}

void free_block(void* data) {
  if (data == nullptr) return;
  std::uintptr_t header[2];
  std::memcpy(header, static_cast<char*>(data) - kHeader, kHeader);
  if (header[0] == kMapped)
    ::munmap(static_cast<char*>(data) - kAlignment, header[1]);
  else if (header[0] == kRegion)
    region_heap().free(static_cast<char*>(data) - kAlignment, header[1]);
  else
    std::free(reinterpret_cast<void*>(header[1]));
}

// Blocks from 32 MiB up are mapped for themselves outside a training run (HeapReuseScope).
constexpr std::size_t kLargeBlock = 32u << 20;
bool system_malloc = false;  // DENSETORCH_SYSTEM_MALLOC: glibc decides everything
std::atomic<int> runs{0};     // HeapReuseScopes alive, in any thread

bool huge_pages() {
  static const bool enabled = !env_flag("DENSETORCH_NO_THP", false);  // read once, not per allocation
  return enabled;
}

class AlignedMallocAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(std::size_t n) override {
    if (n == 0) return {nullptr, nullptr, &free_block, c10::Device(c10::DeviceType::CPU)};
    if (!system_malloc && n >= kRegionBlock && runs.load(std::memory_order_relaxed) > 0) return allocate_region(n);
    if (!system_malloc && n >= kLargeBlock) return allocate_mapped(n);
    void* base = std::malloc(n + kAlignment + kHeader);
    TORCH_CHECK(base != nullptr, "densetorch: out of memory allocating ", n, " bytes");
    if (huge_pages() && n >= 2 * kHugePage) advise_huge_pages(base, n + kAlignment + kHeader);
    const auto start = reinterpret_cast<std::uintptr_t>(base) + kHeader;
    void* data = reinterpret_cast<void*>((start + kAlignment - 1) & ~(kAlignment - 1));
    write_header(data, kHeap, reinterpret_cast<std::uintptr_t>(base));
    return {data, data, &free_block, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &free_block; }

  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

 private:
  static c10::DataPtr allocate_mapped(std::size_t n) {
    const std::size_t length = n + kAlignment;
    void* base = ::mmap(nullptr, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK(base != MAP_FAILED, "densetorch: out of memory mapping ", n, " bytes");
    if (huge_pages()) advise_huge_pages(base, length);
    void* data = static_cast<char*>(base) + kAlignment;
    write_header(data, kMapped, length);
    return {data, data, &free_block, c10::Device(c10::DeviceType::CPU)};
  }

  static c10::DataPtr allocate_region(std::size_t n) {
    const std::size_t length = (n + kAlignment + kPage - 1) & ~(kPage - 1);
    void* data = static_cast<char*>(region_heap().allocate(length)) + kAlignment;
    write_header(data, kRegion, length);
    return {data, data, &free_block, c10::Device(c10::DeviceType::CPU)};
  }
};

}  // namespace

void install_cpu_allocator() {
  static AlignedMallocAllocator allocator;
  c10::SetCPUAllocator(&allocator, /*priority=*/1);
  // Large blocks are densetorch's own business (the region heap in a run, their own mappings
  // outside one); glibc's settings stay the host process's: no mallopt here (a library that
  // changed them would change every thread's heap in the process).
  system_malloc = env_flag("DENSETORCH_SYSTEM_MALLOC", false);
}

void release_free_memory() {
#if defined(__GLIBC__)
  malloc_trim(0);  // other C libraries return free memory on their own terms
#endif
  if (runs.load() == 0) region_heap().release();
}

HeapReuseScope::HeapReuseScope() { runs.fetch_add(1); }
HeapReuseScope::~HeapReuseScope() { runs.fetch_sub(1); }

}  // namespace densetorch
