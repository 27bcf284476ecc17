// A C++ test of native/core/compute_thread: tasks from several threads run on one thread, in
// place when nested or inside ComputeHere; the caller's grad mode and autocast state travel with
// the task; exceptions come back with their type; set_compute_threads reaches the thread.
// Compiled and run by test/20-native-core.test.js; prints "ok" and exits 0, or what failed.
#include "../../native/core/compute_thread.cpp"

#include <ATen/ATen.h>
#include <ATen/autocast_mode.h>
#include <c10/core/GradMode.h>

#include <cstdio>
#include <stdexcept>
#include <string>
#include <thread>

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

  {
    const ComputeHere here;
    check(on_compute_thread([] { return std::this_thread::get_id(); }) == main_id, "ComputeHere runs tasks in place");
  }
  check(on_compute_thread([] { return std::this_thread::get_id(); }) == compute_id, "ComputeHere ends with its scope");

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

  if (failures > 0) return 1;
  std::printf("ok\n");
  return 0;
}
