#include "compute_thread.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <exception>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace densetorch {

namespace {

thread_local bool is_compute_thread = false;
thread_local bool in_long_task = false;      // the compute thread is inside a training run
std::atomic<int> wanted_threads{0};          // set_compute_threads; 0: LibTorch's default

struct Task {
  std::function<void()> run;  // never throws: enqueue's wrapper catches
  bool is_long = false;
};

struct TaskQueue {
  std::mutex mutex;
  std::condition_variable ready;
  std::deque<Task> tasks;
};

// set_compute_idle_hook's; kept apart from the queue so that setting it starts no thread.
struct IdleHook {
  std::mutex mutex;
  std::function<void()> hook;
  std::chrono::milliseconds after{0};
};

IdleHook& idle_hook() {
  static IdleHook instance;
  return instance;
}

// LibTorch's own count for a thread that has set none (OMP_NUM_THREADS, else the cores).
int default_threads() {
  static const int n = at::get_num_threads();
  return n;
}

// LibTorch gives a thread the process's last at::set_num_threads count on its first parallel loop,
// once per library that holds the inline check (LibTorch's and this one's): run both checks first,
// so that they do not undo the count set next.
void settle_thread_count() {
  (void)at::get_num_threads();
  at::internal::lazy_init_num_threads();
}

void serve(const std::shared_ptr<TaskQueue>& queue) {
  is_compute_thread = true;
  int applied = 0;
  bool worked = false;  // since the idle hook last ran
  for (;;) {
    Task task;
    std::function<void()> idle, hook;
    std::chrono::milliseconds idle_after{0};
    if (worked) {
      const std::lock_guard<std::mutex> lock(idle_hook().mutex);
      hook = idle_hook().hook;
      idle_after = idle_hook().after;
    }
    {
      std::unique_lock<std::mutex> lock(queue->mutex);
      const auto has_task = [&] { return !queue->tasks.empty(); };
      if (hook) {
        if (!queue->ready.wait_for(lock, idle_after, has_task)) idle = std::move(hook);
      } else {
        queue->ready.wait(lock, has_task);
      }
      if (!idle) {
        task = std::move(queue->tasks.front());
        queue->tasks.pop_front();
      }
    }
    if (idle) {
      worked = false;
      try {
        idle();
      } catch (...) {  // best effort: an idle hook that fails changes nothing
      }
      continue;
    }
    worked = true;
    if (const int n = compute_threads(); n != applied) {
      settle_thread_count();
      at::set_num_threads(n);
      applied = n;
    }
    in_long_task = task.is_long;
    task.run();
    in_long_task = false;
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

void push(Task task) {
  TaskQueue& q = queue();
  {
    const std::lock_guard<std::mutex> lock(q.mutex);
    q.tasks.push_back(std::move(task));
  }
  q.ready.notify_one();
}

}  // namespace

void post_to_compute_thread(std::function<void()> fn, bool is_long) {
  push(Task{[fn = std::move(fn), state = at::ThreadLocalState()] {
              try {
                const at::ThreadLocalStateGuard guard(state);
                fn();
              } catch (...) {  // fn owns its outcome (compute_thread.h)
              }
            },
            is_long});
}

namespace {

void enqueue(const std::function<void()>& fn, bool is_long) {
  if (is_compute_thread) return fn();
  // The promise lives in the task: a task dropped without running fn ends the wait (broken_promise).
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> finished = done->get_future();
  post_to_compute_thread(
      [&fn, done] {
        try {
          fn();
          done->set_value();
        } catch (...) {
          done->set_exception(std::current_exception());
        }
      },
      is_long);
  finished.get();
}

}  // namespace

void set_compute_idle_hook(std::function<void()> hook, int after_ms) {
  IdleHook& idle = idle_hook();
  const std::lock_guard<std::mutex> lock(idle.mutex);
  idle.hook = std::move(hook);
  idle.after = std::chrono::milliseconds(after_ms);
}

void run_on_compute_thread(const std::function<void()>& fn) { enqueue(fn, /*is_long=*/false); }

void run_long_on_compute_thread(const std::function<void()>& fn) { enqueue(fn, /*is_long=*/true); }

void serve_waiting_tasks() {
  if (!is_compute_thread || !in_long_task) return;
  TaskQueue& q = queue();
  std::deque<Task> short_tasks;
  {
    const std::lock_guard<std::mutex> lock(q.mutex);
    for (auto it = q.tasks.begin(); it != q.tasks.end();) {
      if (it->is_long) {
        ++it;
      } else {
        short_tasks.push_back(std::move(*it));
        it = q.tasks.erase(it);
      }
    }
  }
  for (Task& task : short_tasks) task.run();  // each restores the run's thread-local state when it ends
}

void set_compute_threads(int n) { wanted_threads.store(n); }

int compute_threads() {
  const int n = wanted_threads.load();
  return n > 0 ? n : default_threads();
}

void keep_this_thread_serial() {
  if (is_compute_thread) return;
  (void)default_threads();  // read while this thread still has LibTorch's count
  settle_thread_count();
#ifdef _OPENMP
  omp_set_num_threads(1);  // this thread's count only (at::set_num_threads would change every new thread's)
#endif
}

}  // namespace densetorch
