// One thread per process for densetorch's bounded computations (predict, evaluation batches).
//
// LibTorch parallelises through OpenMP, and libgomp keeps one pool of worker threads per thread
// that starts parallel regions. Work queued from libuv's pool would start regions from up to four
// threads; libgomp then counts more managed threads than cores and has its idle workers spin for
// only about a hundred iterations before sleeping on a futex, so every one of a forward pass's
// hundreds of short regions wakes a sleeping worker: BC-100 inference at batch 1 took 27-29 ms
// per call that way and 13.5-14.8 ms with one libuv thread (2 cores). Running that work on this
// one thread keeps a single pool whose workers stay awake between regions.
#pragma once

#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

namespace densetorch {

// Runs `fn` on the compute thread with the caller's LibTorch thread-local state (grad mode,
// autocast, inference mode) and waits for it; rethrows what it throws. Runs it in place when the
// caller is the compute thread or a thread inside a ComputeHere scope. Tasks run one at a time,
// in the order they came.
void run_on_compute_thread(const std::function<void()>& fn);

// The same for a function with a result.
template <typename F>
auto on_compute_thread(F&& fn) -> std::invoke_result_t<F&> {
  using Result = std::invoke_result_t<F&>;
  if constexpr (std::is_void_v<Result>) {
    run_on_compute_thread([&] { fn(); });
  } else {
    std::optional<Result> result;
    run_on_compute_thread([&] { result.emplace(fn()); });
    return std::move(*result);
  }
}

// While one is alive, this thread runs its own LibTorch work: run_on_compute_thread calls on it
// run in place (a training run's thread, which is long-lived and should not wait behind, or
// hold up, the compute thread). Nests.
class ComputeHere {
 public:
  ComputeHere();
  ~ComputeHere();
  ComputeHere(const ComputeHere&) = delete;
  ComputeHere& operator=(const ComputeHere&) = delete;
};

// The intra-op thread count for the compute thread (set_num_threads records it: LibTorch applies
// a new count only to the thread that sets it, and to threads that have not run LibTorch yet).
void set_compute_threads(int n);

}  // namespace densetorch
