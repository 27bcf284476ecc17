// Data-parallel groups on PyTorch's own collective engine (c10d): a process group joined through a
// TCPStore rendezvous (rank 0 hosts it), Gloo on the CPU. One group per process, as
// torch.distributed has. This header needs no c10d headers: only distributed.cpp includes them,
// and only when the build found gloo's headers (DENSETORCH_DISTRIBUTED); otherwise every call
// but available() throws DistributedError saying what to install.
#pragma once

#include <ATen/ATen.h>

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace densetorch {

// A collective failed: a rank died or stopped answering, the rendezvous timed out, or the
// group is not set up. The message names the rank when it can be found.
struct DistributedError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

namespace distributed {

struct InitOptions {
  std::string backend = "gloo";  // 'gloo' (CPU tensors) or 'nccl' (CUDA tensors)
  int64_t rank = 0;
  int64_t world_size = 1;
  std::string master_addr = "127.0.0.1";
  int64_t master_port = 29500;
  std::chrono::milliseconds timeout{30 * 60 * 1000};  // rendezvous and every collective
  // A peer that sends no heartbeat for this long (a dead machine, a cut link, a stopped process)
  // fails every rank's pending and later collectives, however long `timeout` is.
  std::chrono::milliseconds heartbeat_timeout{30 * 1000};
  // Non-empty: only processes that know it reach the group's store (store_net.h).
  std::string token;
};

struct GroupInfo {
  int64_t rank = 0, world_size = 1;
  std::string backend;
};

enum class ReduceOp { kSum, kMean, kMax, kMin };

// Whether this build can form groups; `reason` says why not (what to install).
bool available(std::string* reason = nullptr);

// Joins the group (blocks until every rank has arrived or the timeout passes). Throws
// DistributedError when already initialized or when the rendezvous fails.
void init(const InitOptions& options);
bool initialized();
GroupInfo info();  // throws DistributedError when not initialized
// Leaves the group; a no-op when there is none.
void destroy();

// Gives up on the group after a failure on this rank that the others cannot see (bad data, a
// NaN): records `why` in the store and closes this rank's connections, so that every other rank's
// pending or next collective fails at once with a DistributedError quoting `why`, instead of
// waiting for the timeout. The group is unusable afterwards: destroy() it. No-op without a group.
void report_failure(const std::string& why);

// Collectives, in place, on every rank in the same order. Each throws DistributedError when a
// rank is gone or the timeout passes. Calls from several threads are serialised.
void all_reduce(at::Tensor& tensor, ReduceOp op);
void broadcast(at::Tensor& tensor, int64_t src);
void barrier();

// All-reduce (sum) of many tensors through flat buckets of about `bucket_bytes` each (one
// collective per bucket, in the order given), as DDP's reducer does.
void all_reduce_coalesced(const std::vector<at::Tensor>& tensors, int64_t bucket_bytes);
// Broadcast of many tensors from `src` through one flat buffer per dtype.
void broadcast_coalesced(const std::vector<at::Tensor>& tensors, int64_t src);

// The samples rank `rank` of `world` takes in one epoch, as PyTorch's DistributedSampler: a
// permutation seeded with seed + epoch when shuffling (else 0..n-1), padded by repeating its
// first indices up to a multiple of `world` (or cut down to one with drop_last), every world-th
// index from `rank`. With `pad` false (evaluation) nothing is repeated or dropped: the shards
// together hold each sample once.
at::Tensor shard_indices(int64_t n, int64_t rank, int64_t world, bool shuffle, uint64_t seed, int64_t epoch,
                         bool drop_last, bool pad = true);

}  // namespace distributed
}  // namespace densetorch
