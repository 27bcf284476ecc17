// The CPU allocator densetorch installs for LibTorch.
#pragma once

namespace densetorch {

// Replaces LibTorch's default CPU allocator (posix_memalign) with one that aligns plain malloc
// blocks to 64 bytes by hand. glibc's memalign asks for alignment slack on every call, so a
// freed block can never serve the next request of the same size when a small allocation sits
// above it: creating and freeing same-sized tensors then grows the heap without bound. Plain
// malloc reuses an exact-size free block. Idempotent; tensors allocated before keep their own
// deleters. Also sets glibc's mmap and trim thresholds (see allocator.cpp) unless
// DENSETORCH_SYSTEM_MALLOC is set.
void install_cpu_allocator();

// Returns the heap's free memory to the system (malloc_trim): after a training run, whose freed
// activations the raised thresholds keep in the heap.
void release_free_memory();

// While alive, this thread's blocks of 32 MiB and more come from the heap and stay there when
// freed, for the next training step to reuse; outside it they are mapped for themselves and
// returned to the system when freed. Nests.
class HeapReuseScope {
 public:
  HeapReuseScope();
  ~HeapReuseScope();
  HeapReuseScope(const HeapReuseScope&) = delete;
  HeapReuseScope& operator=(const HeapReuseScope&) = delete;

 private:
  bool previous_;
};

}  // namespace densetorch
