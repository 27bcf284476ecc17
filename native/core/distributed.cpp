#include "distributed.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <condition_variable>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#ifdef DENSETORCH_DISTRIBUTED
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "store_net.h"
#endif

namespace densetorch::distributed {

at::Tensor shard_indices(int64_t n, int64_t rank, int64_t world, bool shuffle, uint64_t seed, int64_t epoch,
                         bool drop_last, bool pad) {
  if (world < 1 || rank < 0 || rank >= world)
    throw std::out_of_range("rank " + std::to_string(rank) + " is not in a group of " + std::to_string(world));
  at::Tensor order;
  if (shuffle) {
    at::Generator gen = at::detail::createCPUGenerator(seed + static_cast<uint64_t>(epoch));
    order = at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
  } else {
    order = at::arange(n, at::kLong);
  }
  if (!pad) return order.slice(0, rank, n, world);
  int64_t total = 0;
  if (drop_last) {
    total = (n / world) * world;
    order = order.narrow(0, 0, total);
  } else {
    total = (n + world - 1) / world * world;
    if (total > n && n > 0) {
      const int64_t repeats = (total - n + n - 1) / n;
      order = at::cat({order, order.repeat({repeats}).narrow(0, 0, total - n)});
    }
  }
  return order.slice(0, rank, total, world);
}

#ifndef DENSETORCH_DISTRIBUTED

namespace {
constexpr const char* kUnavailable =
    "this densetorch addon was built without distributed support: gloo's headers were not found at build time. "
    "Install them (Debian/Ubuntu: apt-get install libgloo-dev, or let the build fetch them with apt-get download) "
    "or set DENSETORCH_GLOO_INCLUDE to a folder holding gloo/, then rebuild with `npm rebuild densetorch`";
[[noreturn]] void unavailable() { throw DistributedError(kUnavailable); }
}  // namespace

bool available(std::string* reason) {
  if (reason) *reason = kUnavailable;
  return false;
}
void init(const InitOptions&) { unavailable(); }
bool initialized() { return false; }
GroupInfo info() { unavailable(); }
void destroy() {}
void report_failure(const std::string&) {}
void all_reduce(at::Tensor&, ReduceOp) { unavailable(); }
void broadcast(at::Tensor&, int64_t) { unavailable(); }
void barrier() { unavailable(); }
void all_reduce_coalesced(const std::vector<at::Tensor>&, int64_t) { unavailable(); }
void broadcast_coalesced(const std::vector<at::Tensor>&, int64_t) { unavailable(); }

#else

namespace {

const char* op_name(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kMean: return "mean";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

// The first line of a c10d/gloo message, without gloo's "[file:line] " prefix.
std::string first_line(const std::string& s) {
  auto start = s.find_first_not_of(" \n\t");
  if (start == std::string::npos) return s;
  if (s[start] == '[') {
    const auto close = s.find("] ", start);
    const auto newline = s.find('\n', start);
    if (close != std::string::npos && (newline == std::string::npos || close < newline)) start = close + 2;
  }
  const auto end = s.find('\n', start);
  return s.substr(start, end == std::string::npos ? std::string::npos : end - start);
}

const std::string kFailureKey = "failed/";

// c10d's store logs a warning with a backtrace for every failed connection attempt or call; while
// one is alive, the DistributedError that follows says the same in one line instead.
struct QuietLog {
  int saved = FLAGS_caffe2_log_level;
  QuietLog() { FLAGS_caffe2_log_level = std::max(saved, 3); }
  ~QuietLog() { FLAGS_caffe2_log_level = saved; }
  QuietLog(const QuietLog&) = delete;
  QuietLog& operator=(const QuietLog&) = delete;
};

// Whether the address is this machine's loopback (then gloo binds to it, not to the hostname).
bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr.rfind("127.", 0) == 0 || addr == "::1";
}

using Clock = std::chrono::steady_clock;

std::string to_string(const std::vector<uint8_t>& bytes) { return std::string(bytes.begin(), bytes.end()); }
std::vector<uint8_t> to_bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }

std::string where(const InitOptions& o) { return o.master_addr + ":" + std::to_string(o.master_port); }

std::string claim_key(int64_t round, int64_t rank) {
  return "densetorch/round" + std::to_string(round) + "/rank/" + std::to_string(rank);
}

// Why a rank other than 0 lost the group's store (`detail`: what the store call said, if anything).
std::string store_lost(const std::string& where, std::chrono::milliseconds limit, const std::string& detail = "") {
  return "lost the group's store on rank 0 at " + where + ": no answer within " + std::to_string(limit.count()) +
         " ms (rank 0's machine is down, the link to it is cut, or its process is stopped" +
         (detail.empty() ? "" : "; " + detail) + ")";
}

// This worker's restart round: torchrun's (and densetorch launch's) TORCHELASTIC_RESTART_COUNT, else 0.
int64_t restart_round() {
  const char* v = std::getenv("TORCHELASTIC_RESTART_COUNT");
  return v && *v ? std::atoll(v) : 0;
}

// The watchdog's findings, shared with the collective waiting for its work: a lost peer wakes it.
// A store call over a dead link blocks far longer than the store's timeout, so the watchdog's own
// progress is watched too: no round completed for the heartbeat timeout is a lost store.
struct Watch {
  std::mutex mutex;
  std::condition_variable changed;  // a collective completed, a peer was lost, stop, or the thread ended
  std::string lost;                 // why the group is lost; empty while every peer answers
  Clock::time_point last_round = Clock::now();  // the last round of heartbeats that completed
  std::chrono::milliseconds limit{30000}, interval{1000};
  std::string store_where;  // rank 0's host:port, for the message
  int64_t rank = 0, round = 0;  // this rank, and the restart round whose claims mark the ranks to watch
  bool stop = false, finished = false;
  std::thread thread;

  // Why the group is lost, or "" (call with `mutex` held).
  std::string verdict() const {
    if (!lost.empty()) return lost;
    if (Clock::now() - last_round > limit + interval) {
      return rank == 0 ? "the group's store stopped answering for " + std::to_string(limit.count()) + " ms"
                       : store_lost(store_where, limit);
    }
    return "";
  }
};

// Runs `fn` on a thread of its own and waits up to `limit` for it; false when it did not finish
// in time (a store call over a dead link). The thread is then left to end on its own, so `fn`
// must own everything it uses.
bool finishes_within(std::chrono::milliseconds limit, std::function<void()> fn) {
  struct State {
    std::mutex mutex;
    std::condition_variable cv;
    bool done = false;
  };
  auto state = std::make_shared<State>();
  std::thread([state, fn = std::move(fn)] {
    try {
      fn();
    } catch (...) {
      // fn reports through what it captured
    }
    std::lock_guard<std::mutex> lock(state->mutex);
    state->done = true;
    state->cv.notify_all();
  }).detach();
  std::unique_lock<std::mutex> lock(state->mutex);
  return state->cv.wait_for(lock, limit, [&] { return state->done; });
}

// Every rank bumps its heartbeat counter in the store through a connection of its own, and
// watches the others': a counter that stands still for heartbeat_timeout, or a store that does
// not answer within it, is a lost peer (a dead machine or link does not close any socket, so
// without this a collective would wait for the full collective timeout).
void watch_peers(const std::shared_ptr<Watch>& w, const InitOptions& o, const c10::intrusive_ptr<c10d::Store>& store) {
  const auto limit = w->limit;
  const auto key = [](int64_t r) { return "densetorch/beat/" + std::to_string(r); };
  std::vector<int64_t> last(o.world_size, -1);
  std::vector<Clock::time_point> heard(o.world_size, Clock::now());
  // Only densetorch ranks beat (they claimed their rank at init); a PyTorch process in the group does not.
  std::vector<bool> watched(o.world_size, false);
  try {
    for (int64_t r = 0; r < o.world_size; ++r)
      watched[r] = r != o.rank && store->check({claim_key(w->round, r)});
  } catch (const std::exception&) {
    // the loop below finds the store gone
  }
  std::unique_lock<std::mutex> lock(w->mutex);
  while (!w->stop) {
    lock.unlock();
    std::string lost;
    try {
      store->add(key(o.rank), 1);
      const auto now = Clock::now();
      for (int64_t r = 0; r < o.world_size && lost.empty(); ++r) {
        if (!watched[r]) continue;
        const int64_t beats = store->add(key(r), 0);
        if (beats != last[r]) {
          last[r] = beats;
          heard[r] = now;
        } else if (now - heard[r] > limit) {
          lost = "rank " + std::to_string(r) + " sent no heartbeat for " + std::to_string(limit.count()) +
                 " ms (its machine is down, the link to it is cut, or its process is stopped)";
        }
      }
    } catch (const std::exception& e) {
      lost = o.rank == 0 ? "the group's store stopped answering: " + first_line(e.what())
                         : store_lost(where(o), limit, first_line(e.what()));
    }
    lock.lock();
    if (!lost.empty() && !w->stop) {
      w->lost = lost;
      break;
    }
    w->last_round = Clock::now();
    w->changed.wait_for(lock, w->interval, [&] { return w->stop; });
  }
  w->finished = true;
  w->changed.notify_all();
}

struct Group {
  InitOptions options;
#ifndef _WIN32
  // Declared first, destroyed last: the store's connections go through them.
  std::unique_ptr<net::Gate> gate;
  std::unique_ptr<net::Relay> relay;
#endif
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  std::shared_ptr<Watch> watch;
  int64_t sequence = 0;          // collectives issued, for failure reports
  std::string broken;            // set after a failure: later collectives fail at once

  ~Group() { stop_watch(); }
  // Stops the watchdog: joined when it ends within a round, else (stuck in a store call over a
  // dead link) left to end on its own; it owns everything it uses.
  void stop_watch() {
    if (!watch || !watch->thread.joinable()) return;
    std::unique_lock<std::mutex> lock(watch->mutex);
    watch->stop = true;
    watch->changed.notify_all();
    const bool ended = watch->changed.wait_for(lock, 2 * watch->interval + std::chrono::milliseconds(200),
                                               [&] { return watch->finished; });
    lock.unlock();
    if (ended) {
      watch->thread.join();
    } else {
      watch->thread.detach();
    }
  }
};

// A process group whose collective never returned (a peer was lost mid-collective): its worker
// thread is blocked in gloo until gloo's own timeout, and destroying the group would wait for
// it. It is kept, unused, for the rest of the process, which is about to fail or restart.
void abandon(c10::intrusive_ptr<c10d::ProcessGroupGloo> group) {
  static auto* kept = new std::vector<c10::intrusive_ptr<c10d::ProcessGroupGloo>>();
  kept->push_back(std::move(group));
}

std::mutex g_mutex;  // guards g_group and serialises collectives (every rank must issue them in one order)
std::unique_ptr<Group> g_group;

std::string failed_on(const Group& g, const std::string& what) {
  return "distributed " + what + " failed on rank " + std::to_string(g.options.rank) + " of " +
         std::to_string(g.options.world_size) + ": ";
}

// The group for a collective `what`: fails at once when it is broken or a peer is lost.
Group& current(const std::string& what = "call") {
  if (!g_group) throw DistributedError("the distributed group is not initialized: call distributed.init() first");
  Group& g = *g_group;
  if (g.broken.empty() && g.watch) {
    std::lock_guard<std::mutex> lock(g.watch->mutex);
    const std::string lost = g.watch->verdict();
    if (!lost.empty()) g.broken = failed_on(g, what) + lost;
  }
  if (!g.broken.empty()) throw DistributedError(g.broken);
  return g;
}

// Finds which ranks are gone after a failed collective: every survivor reports itself in the
// store and waits a moment for the others; the ranks that never report are named. When the
// store itself is unreachable, rank 0 (its host) is the one that is gone.
std::string diagnose(Group& g, const std::string& what, const std::string& cause) {
  const auto& o = g.options;
  QuietLog quiet;
  struct Findings {
    std::mutex mutex;
    std::string gave_up;  // "rank r gave up: why"
    std::vector<int64_t> missing;
    bool store_gone = false;
  };
  auto found = std::make_shared<Findings>();
  const auto store = g.store;
  const int64_t sequence = g.sequence;
  // Bounded: over a dead link the store's calls block far longer than its timeout.
  const bool answered = finishes_within(o.heartbeat_timeout + std::chrono::milliseconds(2000), [found, store, o, sequence] {
    std::vector<int64_t> missing;
    try {
      for (int64_t r = 0; r < o.world_size; ++r) {
        const std::string key = kFailureKey + std::to_string(r);
        if (r != o.rank && store->check({key})) {
          const auto why = store->get(key);
          std::lock_guard<std::mutex> lock(found->mutex);
          found->gave_up = "rank " + std::to_string(r) + " gave up: " + std::string(why.begin(), why.end());
          return;
        }
      }
      const std::string prefix = "densetorch/failed/" + std::to_string(sequence) + "/";
      store->set(prefix + std::to_string(o.rank), std::vector<uint8_t>{1});
      const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
      for (;;) {
        missing.clear();
        for (int64_t r = 0; r < o.world_size; ++r)
          if (r != o.rank && !store->check({prefix + std::to_string(r)})) missing.push_back(r);
        if (missing.empty() || std::chrono::steady_clock::now() > deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      std::lock_guard<std::mutex> lock(found->mutex);
      found->missing = missing;
    } catch (const std::exception&) {
      std::lock_guard<std::mutex> lock(found->mutex);
      found->store_gone = true;
    }
  });
  std::lock_guard<std::mutex> lock(found->mutex);
  const std::string head = failed_on(g, what);
  if (!found->gave_up.empty()) return head + found->gave_up;
  std::string who;
  if ((!answered || found->store_gone) && o.rank != 0) {
    who = "rank 0 (which hosts the group's store) is gone";
  } else if (!found->missing.empty()) {
    who = found->missing.size() == 1 ? "rank " : "ranks ";
    for (std::size_t i = 0; i < found->missing.size(); ++i) who += (i ? ", " : "") + std::to_string(found->missing[i]);
    who += found->missing.size() == 1 ? " is gone" : " are gone";
  } else {
    who = "every rank is still there";
  }
  return head + who + " (it died, was killed or stopped answering within " + std::to_string(o.timeout.count()) +
         " ms); cause: " + first_line(cause);
}

// Runs one collective; turns any failure into a DistributedError naming the lost rank and marks
// the group broken so that later calls fail at once instead of waiting for the timeout again.
template <typename Issue>
void collective(const std::string& what, Issue&& issue) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Group& g = current(what);
  ++g.sequence;
  try {
    c10::intrusive_ptr<c10d::Work> work = issue(*g.group);
    // Waits for the work or for the watchdog to lose a peer, whichever comes first.
    const auto future = work->getFuture();
    const std::shared_ptr<Watch> watch = g.watch;
    future->addCallback([watch](c10::ivalue::Future&) {
      std::lock_guard<std::mutex> l(watch->mutex);
      watch->changed.notify_all();
    });
    std::string lost;
    {
      std::unique_lock<std::mutex> l(watch->mutex);
      while (!future->completed() && (lost = watch->verdict()).empty()) watch->changed.wait_for(l, watch->interval);
      if (future->completed()) lost.clear();
    }
    if (!lost.empty()) {
      g.broken = failed_on(g, what) + lost;
      abandon(std::move(g.group));
      throw DistributedError(g.broken);
    }
    work->wait();
  } catch (const DistributedError&) {
    throw;
  } catch (const std::exception& e) {
    g.broken = diagnose(g, what, e.what());
    throw DistributedError(g.broken);
  }
}

void check_tensor(const at::Tensor& t, const char* what) {
  if (!t.defined()) throw std::invalid_argument(std::string(what) + ": the tensor is not defined");
  if (!t.device().is_cpu())
    throw std::invalid_argument(std::string(what) + ": the gloo backend works on CPU tensors, got a tensor on " +
                                t.device().str());
  if (!t.is_contiguous()) throw std::invalid_argument(std::string(what) + ": the tensor must be contiguous");
}

// One process per rank, and only the ranks the job expects: rank 0 records the job's size, every
// rank claims its number once. A process that was not expected is refused before it touches the
// process group's keys, so the others are not disturbed.
// Keys are per restart round (torchrun's TORCHELASTIC_RESTART_COUNT): after a restart, a worker
// of another machine may reach the previous round's store before its rank 0 is gone; it then
// waits for the new one (claim_rank returns false) instead of finding its rank taken.
bool claim_rank(c10d::Store& store, const InitOptions& o, int64_t round) {
  const std::string round_key = "densetorch/round";
  const std::string world_key = "densetorch/round" + std::to_string(round) + "/world";
  if (o.rank == 0) {
    store.set(world_key, to_bytes(std::to_string(o.world_size)));
    store.set(round_key, to_bytes(std::to_string(round)));
  } else {
    store.wait({round_key}, o.timeout);
    const int64_t theirs = std::stoll(to_string(store.get(round_key)));
    if (theirs < round) return false;
    if (theirs > round)
      throw DistributedError("the job at " + where(o) + " is in restart round " + std::to_string(theirs) +
                             " and this process in round " + std::to_string(round) +
                             " (TORCHELASTIC_RESTART_COUNT): it belongs to an earlier attempt of the job");
  }
  const std::string world = to_string(store.get(world_key));
  if (world != std::to_string(o.world_size))
    throw DistributedError("the job at " + where(o) + " has " + world + " processes; this one was started as rank " +
                           std::to_string(o.rank) + " of " + std::to_string(o.world_size) +
                           " (check WORLD_SIZE, --nnodes and --nproc-per-node)");
  std::random_device entropy;
  const std::string me = std::to_string(entropy()) + "-" + std::to_string(entropy());
  const std::string holder = to_string(store.compareSet(claim_key(round, o.rank), {}, to_bytes(me)));
  if (holder != me)
    throw DistributedError("rank " + std::to_string(o.rank) + " of the job at " + where(o) +
                           " is taken by another process: this one was not expected (check RANK and --node-rank)");
  return true;
}

}  // namespace

bool available(std::string* reason) {
  if (reason) reason->clear();
  return true;
}

void init(const InitOptions& o) {
  if (o.backend != "gloo") {
    throw DistributedError("backend '" + o.backend + "' is not in this build: it was built against a CPU LibTorch, "
                           "which has gloo only (nccl needs a CUDA LibTorch and NCCL's headers)");
  }
  if (o.world_size < 1) throw std::out_of_range("worldSize must be at least 1, got " + std::to_string(o.world_size));
  if (o.rank < 0 || o.rank >= o.world_size)
    throw std::out_of_range("rank must be in [0, " + std::to_string(o.world_size - 1) + "], got " + std::to_string(o.rank));
  if (o.master_port < 1 || o.master_port > 65535)
    throw std::out_of_range("masterPort must be in [1, 65535], got " + std::to_string(o.master_port));
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    if (g_group) throw DistributedError("the distributed group is already initialized: call destroy() first");
  }
  auto g = std::make_unique<Group>();
  g->options = o;
  try {
    QuietLog quiet;
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(o.master_port);
    so.isServer = o.rank == 0;
    so.numWorkers = static_cast<std::size_t>(o.world_size);
    so.waitWorkers = true;
    so.timeout = o.timeout;
    // Where this process's store connections go: rank 0's store itself, or with a token the
    // store behind its gate (on rank 0: loopback; elsewhere: the local relay through the gate).
    std::string store_host = o.master_addr;
#ifndef _WIN32
    if (so.isServer) {
      const char* bind_to = std::getenv("DENSETORCH_STORE_BIND");
      auto public_socket = std::make_unique<net::Listener>(bind_to && *bind_to ? bind_to : o.master_addr,
                                                           static_cast<int>(o.master_port));
      if (o.token.empty()) {
        so.masterListenFd = public_socket->release();
      } else {
        net::Listener inner("127.0.0.1", 0);
        store_host = "127.0.0.1";
        so.port = static_cast<std::uint16_t>(inner.port);
        so.masterListenFd = inner.release();
        g->gate = std::make_unique<net::Gate>(std::move(public_socket), inner.port, o.token);
      }
    } else if (!o.token.empty()) {
      g->relay = std::make_unique<net::Relay>(o.master_addr, static_cast<int>(o.master_port), o.token, o.timeout);
      store_host = "127.0.0.1";
      so.port = static_cast<std::uint16_t>(g->relay->port());
    } else if (net::is_gate(o.master_addr, static_cast<int>(o.master_port), std::chrono::milliseconds(200))) {
      throw DistributedError("the job at " + where(o) + " requires a job token: set DENSETORCH_JOB_TOKEN (or launch "
                             "--job-token) to the job's");
    }
#else
    if (!o.token.empty()) throw DistributedError("job tokens are not supported on Windows yet");
#endif
    const int64_t round = restart_round();
    c10::intrusive_ptr<c10d::TCPStore> tcp;
    const auto deadline = Clock::now() + o.timeout;
    for (;;) {
      tcp = c10::make_intrusive<c10d::TCPStore>(store_host, so);
      try {
        if (claim_rank(*tcp, o, round)) break;
      } catch (const DistributedError&) {
        throw;
      } catch (const std::exception&) {
        if (o.rank == 0 || Clock::now() > deadline) throw;  // else: an earlier round's store went away mid-claim
      }
      tcp.reset();
      if (Clock::now() > deadline) throw DistributedError("rank 0 of restart round " + std::to_string(round) + " did not come");
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    // The process group's keys nest as torch.distributed.init_process_group's default group does
    // ("default_pg", then group "0/", then device "cpu/"), so that a PyTorch process can join.
    auto pg_store = c10::make_intrusive<c10d::PrefixStore>(
        "cpu/", c10::make_intrusive<c10d::PrefixStore>("0/", c10::make_intrusive<c10d::PrefixStore>("default_pg", tcp)));
    auto options = c10d::ProcessGroupGloo::Options::create(o.timeout);
    const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
    if (ifname && *ifname) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    } else if (is_loopback(o.master_addr)) {
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
#ifndef _WIN32
      // The interface that reaches rank 0 (the hostname may resolve to another, or to none).
      options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(net::local_address_towards(o.master_addr)));
#else
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
#endif
    }
    options->threads = 2;
    g->group = c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, static_cast<int>(o.rank),
        static_cast<int>(o.world_size), options);
    // The watchdog's own connection to the store, answering within the heartbeat timeout.
    c10d::TCPStoreOptions beat;
    beat.port = so.port;
    beat.isServer = false;
    beat.waitWorkers = false;
    beat.timeout = o.heartbeat_timeout;
    c10::intrusive_ptr<c10d::Store> beat_store = c10::make_intrusive<c10d::TCPStore>(store_host, beat);
    // Failure reports and diagnoses go through it too: over a dead link they give up within the
    // heartbeat timeout instead of the collective one.
    g->store = c10::make_intrusive<c10d::PrefixStore>("densetorch", beat_store);
    g->watch = std::make_shared<Watch>();
    g->watch->limit = o.heartbeat_timeout;
    g->watch->interval = std::clamp<std::chrono::milliseconds>(o.heartbeat_timeout / 10, std::chrono::milliseconds(50),
                                                               std::chrono::milliseconds(1000));
    g->watch->store_where = where(o);
    g->watch->rank = o.rank;
    g->watch->round = round;
    g->watch->thread = std::thread([w = g->watch, o, beat_store] { watch_peers(w, o, beat_store); });
  } catch (const DistributedError& e) {
    throw DistributedError("could not join the group as rank " + std::to_string(o.rank) + " of " +
                           std::to_string(o.world_size) + " at " + where(o) + ": " + e.what());
  } catch (const std::exception& e) {
    throw DistributedError("could not join the group as rank " + std::to_string(o.rank) + " of " +
                           std::to_string(o.world_size) + " at " + where(o) + " within " + std::to_string(o.timeout.count()) +
                           " ms: " + first_line(e.what()));
  }
  std::lock_guard<std::mutex> lock(g_mutex);
  if (g_group) throw DistributedError("the distributed group is already initialized: call destroy() first");
  g_group = std::move(g);
}

bool initialized() {
  std::lock_guard<std::mutex> lock(g_mutex);
  return g_group != nullptr;
}

GroupInfo info() {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_group) throw DistributedError("the distributed group is not initialized: call distributed.init() first");
  return {g_group->options.rank, g_group->options.world_size, g_group->options.backend};
}

void destroy() {
  std::unique_ptr<Group> g;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g = std::move(g_group);
  }
  if (!g) return;
  g->stop_watch();
  if (g->group) g->group->shutdown();
}

void report_failure(const std::string& why) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_group || !g_group->broken.empty()) return;
  Group& g = *g_group;
  g.broken = "this rank gave up on the group (" + why + "): destroy() it and init() again";
  // When the store is gone too (or unreachable), the others find out from the closed connections alone.
  finishes_within(std::chrono::milliseconds(2000), [store = g.store, key = kFailureKey + std::to_string(g.options.rank), why] {
    store->set(key, std::vector<uint8_t>(why.begin(), why.end()));
  });
  g.group->shutdown();
  g.group.reset();  // closes this rank's connections: the others' collectives fail now
}

void all_reduce(at::Tensor& tensor, ReduceOp op) {
  check_tensor(tensor, "allReduce");
  const auto c10d_op = op == ReduceOp::kMax   ? c10d::ReduceOp::MAX
                       : op == ReduceOp::kMin ? c10d::ReduceOp::MIN
                                              : c10d::ReduceOp::SUM;
  collective(std::string("allReduce (") + op_name(op) + ")", [&](c10d::ProcessGroupGloo& pg) {
    std::vector<at::Tensor> tensors{tensor};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d_op;
    return pg.allreduce(tensors, options);
  });
  if (op == ReduceOp::kMean) {
    const auto world = info().world_size;
    if (at::isIntegralType(tensor.scalar_type(), /*includeBool=*/true)) {
      tensor.div_(world, "floor");
    } else {
      tensor.div_(world);
    }
  }
}

void broadcast(at::Tensor& tensor, int64_t src) {
  check_tensor(tensor, "broadcast");
  const auto world = info().world_size;
  if (src < 0 || src >= world)
    throw std::out_of_range("src must be in [0, " + std::to_string(world - 1) + "], got " + std::to_string(src));
  collective("broadcast", [&](c10d::ProcessGroupGloo& pg) {
    std::vector<at::Tensor> tensors{tensor};
    c10d::BroadcastOptions options;
    options.rootRank = src;
    return pg.broadcast(tensors, options);
  });
}

void barrier() {
  collective("barrier", [&](c10d::ProcessGroupGloo& pg) { return pg.barrier(c10d::BarrierOptions()); });
}

namespace {

// Runs `op` on one flat buffer per run of tensors that share a dtype and fit in `bucket_bytes`
// (a tensor larger than that gets a bucket of its own), copying the results back.
template <typename Op>
void through_buckets(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes, Op&& op) {
  std::size_t begin = 0;
  while (begin < tensors.size()) {
    std::size_t end = begin;
    int64_t bytes = 0;
    while (end < tensors.size() && tensors[end].scalar_type() == tensors[begin].scalar_type() &&
           (end == begin || bytes + tensors[end].nbytes() <= static_cast<std::size_t>(bucket_bytes))) {
      bytes += static_cast<int64_t>(tensors[end].nbytes());
      ++end;
    }
    std::vector<at::Tensor> flat_parts;
    for (std::size_t i = begin; i < end; ++i) flat_parts.push_back(tensors[i].reshape({-1}));
    at::Tensor flat = at::cat(flat_parts);
    op(flat);
    int64_t offset = 0;
    for (std::size_t i = begin; i < end; ++i) {
      const int64_t n = tensors[i].numel();
      tensors[i].copy_(flat.narrow(0, offset, n).view(tensors[i].sizes()));
      offset += n;
    }
    begin = end;
  }
}

}  // namespace

void all_reduce_coalesced(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes) {
  through_buckets(tensors, bucket_bytes, [](at::Tensor& flat) { all_reduce(flat, ReduceOp::kSum); });
}

void broadcast_coalesced(const std::vector<at::Tensor>& tensors, int64_t src) {
  through_buckets(tensors, std::numeric_limits<int64_t>::max(), [&](at::Tensor& flat) { broadcast(flat, src); });
}

#endif

}  // namespace densetorch::distributed
