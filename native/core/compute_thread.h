// One thread per process runs densetorch's LibTorch work in parallel: training runs, predictions,
// evaluation batches, the synchronous forward.
//
// LibTorch parallelises through OpenMP, and libgomp keeps one pool of worker threads per thread
// that starts parallel regions. Once the pools hold more workers than the process has cores
// (any second pool of two threads on 2 cores), libgomp lets idle workers spin for only about a
// hundred iterations before sleeping on a futex, so every one of a step's thousands of short
// regions wakes a sleeping worker. Predictions queued from libuv's four threads did that (BC-100
// batch 1: 27-29 ms per call, 13.5-14.8 ms from one thread), and so did a training run on a
// thread of its own beside the pool the main thread started while building the model
// (DenseNet-121 batch 16 training: 19.5 thousand context switches per run and 2.50-2.55 s/step,
// 600 and 2.15-2.23 s/step with one pool). So every other thread runs LibTorch alone
// (keep_this_thread_serial), and the one compute thread holds the only pool.
#pragma once

#include <functional>
#include <optional>
#include <type_traits>
#include <utility>

namespace densetorch {

// Queues `fn` for the compute thread and returns at once: nothing waits for it. It runs with the
// caller's LibTorch thread-local state (grad mode, autocast, inference mode); `is_long` marks a
// training run (see run_long_on_compute_thread). `fn` owns its outcome: it must catch what it
// throws (an escaping exception is dropped). The bindings settle promises this way, so no thread
// of libuv's pool waits for the compute thread. Called from the compute thread itself, it still
// queues (the task runs after the current one).
void post_to_compute_thread(std::function<void()> fn, bool is_long = false);

// Runs `fn` on the compute thread with the caller's LibTorch thread-local state (grad mode,
// autocast, inference mode) and waits for it; rethrows what it throws. Runs it in place when the
// caller is the compute thread. Tasks run one at a time, in the order they came, except that a
// training run lets the short tasks queued behind it run between its steps (serve_waiting_tasks).
void run_on_compute_thread(const std::function<void()>& fn);

// The same for a training run: a long task during which serve_waiting_tasks runs the short tasks
// (predictions, evaluation batches) queued meanwhile; other runs wait for it to end.
void run_long_on_compute_thread(const std::function<void()>& fn);

// On the compute thread, inside a long task: runs the short tasks queued since it began (between
// two training steps, so that a prediction waits for one step, not for the whole run). Does
// nothing elsewhere.
void serve_waiting_tasks();

namespace detail {
// `run` (one of the two above) for a function with a result.
template <void (*Run)(const std::function<void()>&), typename F>
auto with_result(F&& fn) -> std::invoke_result_t<F&> {
  using Result = std::invoke_result_t<F&>;
  if constexpr (std::is_void_v<Result>) {
    Run([&] { fn(); });
  } else {
    std::optional<Result> result;
    Run([&] { result.emplace(fn()); });
    return std::move(*result);
  }
}
}  // namespace detail

// run_on_compute_thread and run_long_on_compute_thread for a function with a result.
template <typename F>
auto on_compute_thread(F&& fn) -> std::invoke_result_t<F&> {
  return detail::with_result<run_on_compute_thread>(std::forward<F>(fn));
}
template <typename F>
auto long_on_compute_thread(F&& fn) -> std::invoke_result_t<F&> {
  return detail::with_result<run_long_on_compute_thread>(std::forward<F>(fn));
}

// `hook` runs on the compute thread once it has been idle for `after_ms` milliseconds after some
// work (not again until more work came): densetorch gives its heaps' free memory back to the
// system there, so that a process's memory goes back down after a burst of predictions.
void set_compute_idle_hook(std::function<void()> hook, int after_ms);

// The intra-op thread count for the compute thread (LibTorch applies a new count only to the
// thread that sets it, and to threads that have not run LibTorch yet).
void set_compute_threads(int n);

// The compute thread's count: the last set_compute_threads, else LibTorch's default.
int compute_threads();

// LibTorch work on the calling thread runs on that thread alone: it never starts an OpenMP pool
// of its own (see above). The addon calls it on the main thread and on libuv's threads; a
// no-op on the compute thread.
void keep_this_thread_serial();

}  // namespace densetorch
