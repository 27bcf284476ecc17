// A C++ test of native/core/compute_thread: tasks from several threads run on one thread, in
// place when nested; the caller's grad mode and autocast state travel with the task; exceptions
// come back with their type; set_compute_threads reaches the thread; a long task serves the short
// tasks queued behind it (serve_waiting_tasks) but not another long one; threads kept serial start
// no OpenMP pool, so the process holds one pool: the compute thread's; a posted task runs without
// its caller waiting; the idle hook runs once after work.
// Compiled and run by test/20-native-core.test.js; prints "ok" and exits 0, or what failed.
#include "../../native/core/compute_thread.cpp"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using namespace densetorch;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    std::printf("FAILED: %s\n", what.c_str());
    ++failures;
  }
}

}  // namespace

int main() {
  const auto main_id = std::this_thread::get_id();
  const auto compute_id = on_compute_thread([] { return std::this_thread::get_id(); });
  check(compute_id != main_id, "the task runs on another thread than its caller");

  std::thread::id from_other;
  std::thread([&] { from_other = on_compute_thread([] { return std::this_thread::get_id(); }); }).join();
  check(from_other == compute_id, "tasks from two threads run on the same thread");

  const auto nested = on_compute_thread([] { return on_compute_thread([] { return std::this_thread::get_id(); }); });
  check(nested == compute_id, "a task's own call runs in place (no deadlock)");

  check(on_compute_thread([] { return c10::GradMode::is_enabled(); }), "grad mode on by default");
  {
    const c10::NoGradGuard no_grad;
    check(!on_compute_thread([] { return c10::GradMode::is_enabled(); }), "the caller's no_grad travels");
  }
  check(on_compute_thread([] { return c10::GradMode::is_enabled(); }), "and does not stay on the compute thread");

  at::autocast::set_autocast_enabled(at::kCPU, true);
  at::autocast::set_autocast_dtype(at::kCPU, at::kBFloat16);
  const bool autocast = on_compute_thread([] {
    return at::autocast::is_autocast_enabled(at::kCPU) && at::autocast::get_autocast_dtype(at::kCPU) == at::kBFloat16;
  });
  at::autocast::set_autocast_enabled(at::kCPU, false);
  check(autocast, "the caller's autocast state travels");
  check(!on_compute_thread([] { return at::autocast::is_autocast_enabled(at::kCPU); }), "and does not stay");

  try {
    run_on_compute_thread([] { throw std::out_of_range("bad index"); });
    check(false, "an exception comes back");
  } catch (const std::out_of_range& e) {
    check(std::string(e.what()) == "bad index", "with its message");
  }
  check(on_compute_thread([] { return 7; }) == 7, "the thread serves tasks after one threw");

  for (int n : {1, 2}) {
    set_compute_threads(n);
    check(on_compute_thread([] { return at::get_num_threads(); }) == n,
          "set_compute_threads(" + std::to_string(n) + ") reaches the compute thread");
  }
  const at::Tensor sum = on_compute_thread([] { return at::arange(1000, at::kFloat).sum(); });
  check(sum.item<float>() == 499500.f, "LibTorch work on the compute thread");

  // A long task (a training run) serves the short tasks queued behind it, in their order, and
  // leaves a long one queued behind it for later.
  {
    std::atomic<bool> short_asked{false}, second_done{false};
    std::vector<std::string> order;
    std::thread asker;
    run_long_on_compute_thread([&] {
      check(std::this_thread::get_id() == compute_id, "a long task runs on the compute thread");
      // A second run queued (posting returns at once), then a short task asked for behind it.
      post_to_compute_thread(
          [&] {
            order.push_back("second run");
            second_done = true;
          },
          /*is_long=*/true);
      asker = std::thread([&] {
        short_asked = true;
        run_on_compute_thread([&] { order.push_back("short 1"); });
      });
      while (!short_asked) std::this_thread::yield();
      // Served "between steps" until the short task came (it waits behind the second run's place).
      for (int i = 0; i < 5000 && order.empty(); ++i) {
        serve_waiting_tasks();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
      order.push_back("first run ends");
    });
    asker.join();
    for (int i = 0; i < 5000 && !second_done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    check(order.size() == 3 && order[0] == "short 1" && order[1] == "first run ends" && order[2] == "second run",
          "a short task asked for during a run runs between its steps; a second run waits for the first");
  }
  serve_waiting_tasks();  // off the compute thread: nothing
  check(on_compute_thread([] { return 8; }) == 8, "the thread serves tasks after a long one");

  // post_to_compute_thread returns at once: the posted task waits for a flag set after it
  // returned (a blocking post would never see it), carries the caller's grad mode, and an
  // exception it lets escape is dropped without stopping the thread.
  {
    std::atomic<bool> posted{false}, ran{false}, grad{true};
    std::thread::id where;
    {
      const c10::NoGradGuard no_grad;
      post_to_compute_thread([&] {
        for (int i = 0; i < 5000 && !posted; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
        where = std::this_thread::get_id();
        grad = c10::GradMode::is_enabled();
        ran = true;
      });
    }
    posted = true;
    for (int i = 0; i < 5000 && !ran; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    check(ran && where == compute_id, "a posted task runs on the compute thread, after post returned");
    check(!grad, "with the caller's grad mode");
    post_to_compute_thread([] { throw std::runtime_error("dropped"); });
    check(on_compute_thread([] { return 9; }) == 9, "the thread serves tasks after a posted one threw");
  }

  // The idle hook runs once the thread has idled after some work, and not again without work.
  {
    std::atomic<int> idled{0};
    set_compute_idle_hook([&] { idled.fetch_add(1); }, 20);
    run_on_compute_thread([] {});
    for (int i = 0; i < 2000 && idled == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    check(idled == 1, "the idle hook ran once after the work (" + std::to_string(idled.load()) + " times)");
    run_on_compute_thread([] {});
    for (int i = 0; i < 2000 && idled == 1; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    check(idled == 2, "and once more after more work");
    set_compute_idle_hook(nullptr, 0);
  }

  // One OpenMP pool: threads kept serial run LibTorch's parallel loops alone; the compute thread
  // runs them on its threads; the process gains only the compute thread's workers.
  const auto threads_in_loop = [] {
    std::mutex m;
    std::set<std::thread::id> ids;
    at::parallel_for(0, 1 << 16, 1, [&](int64_t, int64_t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      const std::lock_guard<std::mutex> lock(m);
      ids.insert(std::this_thread::get_id());
    });
    return ids.size();
  };
  const auto process_threads = [] {
    return std::distance(std::filesystem::directory_iterator("/proc/self/task"), std::filesystem::directory_iterator{});
  };
  const auto before = process_threads();
  keep_this_thread_serial();
  check(threads_in_loop() == 1, "a thread kept serial runs a parallel loop alone");
  std::size_t other = 0;
  std::thread([&] {
    keep_this_thread_serial();
    other = threads_in_loop();
  }).join();
  check(other == 1, "on another thread kept serial too");
  set_compute_threads(2);
  check(on_compute_thread(threads_in_loop) == 2, "the compute thread runs it on its 2 threads");
  check(on_compute_thread([] { return at::get_num_threads(); }) == 2 && compute_threads() == 2,
        "the compute thread keeps its count after other threads were made serial");
  check(threads_in_loop() == 1, "the serial thread stays serial");
  const auto after = process_threads();
  check(after - before <= 1, "one OpenMP worker more in the process (" + std::to_string(before) + " -> " + std::to_string(after) + " threads)");

  if (failures > 0) return 1;
  std::printf("ok\n");
  return 0;
}
