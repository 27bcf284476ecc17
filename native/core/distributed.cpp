#include "distributed.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>

#ifdef DENSETORCH_DISTRIBUTED
#include <c10/util/Logging.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
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

struct Group {
  InitOptions options;
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> group;
  int64_t sequence = 0;          // collectives issued, for failure reports
  std::string broken;            // set after a failure: later collectives fail at once
};

std::mutex g_mutex;  // guards g_group and serialises collectives (every rank must issue them in one order)
std::unique_ptr<Group> g_group;

Group& current() {
  if (!g_group) throw DistributedError("the distributed group is not initialized: call distributed.init() first");
  if (!g_group->broken.empty()) throw DistributedError(g_group->broken);
  return *g_group;
}

// Finds which ranks are gone after a failed collective: every survivor reports itself in the
// store and waits a moment for the others; the ranks that never report are named. When the
// store itself is unreachable, rank 0 (its host) is the one that is gone.
std::string diagnose(Group& g, const std::string& what, const std::string& cause) {
  const auto& o = g.options;
  std::vector<int64_t> missing;
  bool store_gone = false;
  QuietLog quiet;
  try {
    for (int64_t r = 0; r < o.world_size; ++r) {
      const std::string key = kFailureKey + std::to_string(r);
      if (r != o.rank && g.store->check({key})) {
        const auto why = g.store->get(key);
        return "distributed " + what + " failed on rank " + std::to_string(o.rank) + " of " +
               std::to_string(o.world_size) + ": rank " + std::to_string(r) + " gave up: " +
               std::string(why.begin(), why.end());
      }
    }
    const std::string prefix = "densetorch/failed/" + std::to_string(g.sequence) + "/";
    g.store->set(prefix + std::to_string(o.rank), std::vector<uint8_t>{1});
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
    for (;;) {
      missing.clear();
      for (int64_t r = 0; r < o.world_size; ++r)
        if (r != o.rank && !g.store->check({prefix + std::to_string(r)})) missing.push_back(r);
      if (missing.empty() || std::chrono::steady_clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  } catch (const std::exception&) {
    store_gone = true;
  }
  std::string who;
  if (store_gone && o.rank != 0) {
    who = "rank 0 (which hosts the group's store) is gone";
  } else if (!missing.empty()) {
    who = missing.size() == 1 ? "rank " : "ranks ";
    for (std::size_t i = 0; i < missing.size(); ++i) who += (i ? ", " : "") + std::to_string(missing[i]);
    who += missing.size() == 1 ? " is gone" : " are gone";
  } else {
    who = "every rank is still there";
  }
  return "distributed " + what + " failed on rank " + std::to_string(o.rank) + " of " + std::to_string(o.world_size) +
         ": " + who + " (it died, was killed or stopped answering within " +
         std::to_string(o.timeout.count()) + " ms); cause: " + first_line(cause);
}

// Runs one collective; turns any failure into a DistributedError naming the lost rank and marks
// the group broken so that later calls fail at once instead of waiting for the timeout again.
template <typename Issue>
void collective(const std::string& what, Issue&& issue) {
  std::lock_guard<std::mutex> lock(g_mutex);
  Group& g = current();
  ++g.sequence;
  try {
    c10::intrusive_ptr<c10d::Work> work = issue(*g.group);
    work->wait();
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
    auto tcp = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
    g->store = c10::make_intrusive<c10d::PrefixStore>("densetorch", tcp);  // failure reports
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
      options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    options->threads = 2;
    g->group = c10::make_intrusive<c10d::ProcessGroupGloo>(pg_store, static_cast<int>(o.rank),
        static_cast<int>(o.world_size), options);
  } catch (const std::exception& e) {
    throw DistributedError("could not join the group as rank " + std::to_string(o.rank) + " of " +
                           std::to_string(o.world_size) + " at " + o.master_addr + ":" +
                           std::to_string(o.master_port) + " within " + std::to_string(o.timeout.count()) +
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
  if (g && g->group) g->group->shutdown();
}

void report_failure(const std::string& why) {
  std::lock_guard<std::mutex> lock(g_mutex);
  if (!g_group || !g_group->broken.empty()) return;
  Group& g = *g_group;
  g.broken = "this rank gave up on the group (" + why + "): destroy() it and init() again";
  try {
    g.store->set(kFailureKey + std::to_string(g.options.rank), std::vector<uint8_t>(why.begin(), why.end()));
  } catch (const std::exception&) {
    // the store is gone too: the others find out from the closed connections alone
  }
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
