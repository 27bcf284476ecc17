// The CPU allocator densetorch installs for LibTorch.
#pragma once

namespace densetorch {

// Replaces LibTorch's default CPU allocator (posix_memalign) with one that aligns plain malloc
// blocks to 64 bytes by hand. glibc's memalign asks for alignment slack on every call, so a
// freed block can never serve the next request of the same size when a small allocation sits
// above it: creating and freeing same-sized tensors then grows the heap without bound. Plain
// malloc reuses an exact-size free block. Idempotent; tensors allocated before keep their own
// deleters. Changes nothing of glibc's own settings (mallopt) for the process.
// DENSETORCH_SYSTEM_MALLOC=1 leaves large blocks to glibc too (no region heap, no own mappings).
void install_cpu_allocator();

// Returns the heaps' free memory to the system (malloc_trim, and densetorch's own heap once no
// HeapReuseScope is alive): after a training run, whose freed activations they kept for reuse,
// and when the compute thread has been idle a moment (set_compute_idle_hook).
void release_free_memory();

// While one is alive (in any thread), blocks of 128 KiB and more (those glibc would map for
// themselves at its default threshold) come from densetorch's own heap
// and stay there when freed, for the next training step or prediction to reuse (fit, predict and
// evaluate hold one; fit gives the heap's free memory back when it returns); outside, blocks of
// 32 MiB and more are mapped for themselves and returned to the system when freed. Nests.
class HeapReuseScope {
 public:
  HeapReuseScope();
  ~HeapReuseScope();
  HeapReuseScope(const HeapReuseScope&) = delete;
  HeapReuseScope& operator=(const HeapReuseScope&) = delete;
};

}  // namespace densetorch
