// A C++ test of native/core (no N-API): the CPU allocator densetorch installs (allocator.cpp).
// During a training run (HeapReuseScope) blocks of 1 MiB and more come from densetorch's own heap:
// a freed block serves the next request of its size at the same address (no fresh pages), freed
// neighbours merge into one range for a larger request, contents survive other blocks' churn from
// several threads, blocks outlive the scope, and release_free_memory gives the memory back to the
// system once no run is on. Compiled and run by test/20-native-core.test.js; prints "ok" and
// exits 0, or what went wrong and exits 1.
#include "check.h"
#include "../../native/core/allocator.cpp"

#include <cstdio>
#include <fstream>
#include <random>
#include <thread>
#include <vector>

using namespace densetorch;
using densetorch_test::check;
using densetorch_test::failures;

namespace {


constexpr std::size_t MiB = 1u << 20;

c10::DataPtr allocate(std::size_t n) { return c10::GetCPUAllocator()->allocate(n); }
char* bytes(const c10::DataPtr& p) { return static_cast<char*>(p.get()); }

double rss_mib() {
  std::ifstream statm("/proc/self/statm");
  long pages = 0, resident = 0;
  statm >> pages >> resident;
  return static_cast<double>(resident) * 4096.0 / MiB;
}

void fill(const c10::DataPtr& p, std::size_t n, char value) { std::memset(p.get(), value, n); }
bool holds(const c10::DataPtr& p, std::size_t n, char value) {
  for (std::size_t i = 0; i < n; i += 4096)
    if (bytes(p)[i] != value) return false;
  return bytes(p)[n - 1] == value;
}

}  // namespace

int main() {
  install_cpu_allocator();
  c10::DataPtr outlives;
  {
    const HeapReuseScope run;
    // A freed block serves the next request of its size at the same address.
    void* first = nullptr;
    {
      auto a = allocate(3 * MiB);
      first = a.get();
      check(reinterpret_cast<std::uintptr_t>(first) % 64 == 0, "blocks are 64-byte aligned");
      fill(a, 3 * MiB, 1);
    }
    {
      auto b = allocate(3 * MiB);
      check(b.get() == first, "a freed block is reused for the same size");
    }
    // Two freed neighbours merge: a request for both their sizes starts where the first did.
    {
      auto a = allocate(5 * MiB);
      auto b = allocate(5 * MiB);
      void* start = a.get();
      check(bytes(b) > bytes(a) && bytes(b) - bytes(a) < static_cast<std::ptrdiff_t>(5 * MiB + 8192),
            "consecutive blocks are neighbours");
      a.clear();
      b.clear();
      auto c = allocate(10 * MiB);
      check(c.get() == start, "freed neighbours merge into one range");
    }
    // Several threads allocate, fill, check and free blocks of many sizes at once.
    std::vector<std::thread> threads;
    std::atomic<int> corrupted{0};
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([t, &corrupted] {
        std::mt19937 rng(static_cast<unsigned>(t));
        std::uniform_int_distribution<std::size_t> size(MiB, 8 * MiB);
        std::vector<std::pair<c10::DataPtr, std::size_t>> live;
        for (int i = 0; i < 400; ++i) {
          const std::size_t n = size(rng);
          live.emplace_back(allocate(n), n);
          fill(live.back().first, n, static_cast<char>(t + 1));
          if (live.size() > 6) {
            const std::size_t victim = rng() % live.size();
            if (!holds(live[victim].first, live[victim].second, static_cast<char>(t + 1))) ++corrupted;
            live.erase(live.begin() + static_cast<std::ptrdiff_t>(victim));
          }
        }
        for (auto& [p, n] : live)
          if (!holds(p, n, static_cast<char>(t + 1))) ++corrupted;
      });
    for (auto& th : threads) th.join();
    check(corrupted.load() == 0, "blocks keep their contents while other threads allocate and free");
    outlives = allocate(2 * MiB);
    fill(outlives, 2 * MiB, 7);
    // Touch 256 MiB, then free it: the run keeps it for reuse.
    std::vector<c10::DataPtr> big;
    for (int i = 0; i < 64; ++i) {
      big.push_back(allocate(4 * MiB));
      fill(big.back(), 4 * MiB, 3);
    }
  }
  check(holds(outlives, 2 * MiB, 7), "a block allocated in a run outlives it");
  outlives.clear();  // back to the region heap after the run
  const double kept = rss_mib();
  release_free_memory();
  const double released = rss_mib();
  std::printf("resident memory after the run %.0f MiB, after release_free_memory %.0f MiB\n", kept, released);
  check(kept - released >= 200, "release_free_memory returns the run's freed memory to the system");
  // Outside a run, small and large blocks still work (malloc and their own mappings).
  {
    auto small = allocate(2 * MiB), large = allocate(40 * MiB);
    fill(small, 2 * MiB, 5);
    fill(large, 40 * MiB, 6);
    check(holds(small, 2 * MiB, 5) && holds(large, 40 * MiB, 6), "blocks outside a run hold their contents");
  }
  if (failures != 0) return 1;
  std::printf("ok\n");
  return 0;
}
