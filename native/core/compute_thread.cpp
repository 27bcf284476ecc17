#include "compute_thread.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

namespace densetorch {

namespace {

thread_local int computes_here = 0;  // > 0 on the compute thread and inside ComputeHere scopes
std::atomic<int> wanted_threads{0};  // set_compute_threads; 0: LibTorch's default

struct TaskQueue {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<std::function<void()>> tasks;
};

void serve(const std::shared_ptr<TaskQueue>& queue) {
  computes_here = 1;
  int applied = 0;
  for (;;) {
    std::function<void()> task;
    {
      std::unique_lock<std::mutex> lock(queue->mutex);
      queue->ready.wait(lock, [&] { return !queue->tasks.empty(); });
      task = std::move(queue->tasks.front());
      queue->tasks.pop_front();
    }
    if (const int n = wanted_threads.load(); n > 0 && n != applied) {
      at::set_num_threads(n);
      applied = n;
    }
    task();  // never throws: run_on_compute_thread's task catches
  }
}

// Started on first use and never stopped: the thread holds the queue, so neither depends on the
// order of static destruction at exit (the process ends it, as it ends libuv's threads).
TaskQueue& queue() {
  static const std::shared_ptr<TaskQueue> instance = [] {
    auto q = std::make_shared<TaskQueue>();
    std::thread([q] { serve(q); }).detach();
    return q;
  }();
  return *instance;
}

}  // namespace

void run_on_compute_thread(const std::function<void()>& fn) {
  if (computes_here > 0) return fn();
  const at::ThreadLocalState state;
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  TaskQueue& q = queue();
  {
    const std::lock_guard<std::mutex> lock(q.mutex);
    q.tasks.emplace_back([&] {
      try {
        const at::ThreadLocalStateGuard guard(state);
        fn();
        done.set_value();
      } catch (...) {
        done.set_exception(std::current_exception());
      }
    });
  }
  q.ready.notify_one();
  finished.get();
}

ComputeHere::ComputeHere() { ++computes_here; }
ComputeHere::~ComputeHere() { --computes_here; }

void set_compute_threads(int n) { wanted_threads.store(n); }

}  // namespace densetorch
