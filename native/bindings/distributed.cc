#include "distributed.h"

#include "../core/distributed.h"
#include "errors.h"
#include "tensor.h"
#include "worker.h"

#include <string>

namespace densetorch::bindings {
namespace {

namespace dist = densetorch::distributed;

struct Empty {};

Napi::Value Undefined(Napi::Env env, Empty&) { return env.Undefined(); }

// init({ backend, rank, worldSize, masterAddr, masterPort, timeoutMs, heartbeatTimeoutMs, jobToken? }) -> Promise<void>;
// the JS side has checked and defaulted every field. The rendezvous blocks, so it runs off the
// main thread.
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto o = info[0].As<Napi::Object>();
    dist::InitOptions options;
    options.backend = o.Get("backend").As<Napi::String>().Utf8Value();
    options.rank = o.Get("rank").As<Napi::Number>().Int64Value();
    options.world_size = o.Get("worldSize").As<Napi::Number>().Int64Value();
    options.master_addr = o.Get("masterAddr").As<Napi::String>().Utf8Value();
    options.master_port = o.Get("masterPort").As<Napi::Number>().Int64Value();
    options.timeout = std::chrono::milliseconds(o.Get("timeoutMs").As<Napi::Number>().Int64Value());
    options.heartbeat_timeout = std::chrono::milliseconds(o.Get("heartbeatTimeoutMs").As<Napi::Number>().Int64Value());
    if (o.Get("jobToken").IsString()) options.token = o.Get("jobToken").As<Napi::String>().Utf8Value();
    return PromiseWorker<Empty>::Start(env, [options] { dist::init(options); return Empty{}; }, Undefined);
  });
}

Napi::Value IsInitialized(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), dist::initialized());
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto g = dist::info();
    Napi::Object out = Napi::Object::New(env);
    out.Set("rank", static_cast<double>(g.rank));
    out.Set("worldSize", static_cast<double>(g.world_size));
    out.Set("backend", g.backend);
    return out;
  });
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  guarded(env, [] { dist::destroy(); });
  return env.Undefined();
}

dist::ReduceOp reduce_op(const std::string& name) {
  if (name == "sum") return dist::ReduceOp::kSum;
  if (name == "mean") return dist::ReduceOp::kMean;
  if (name == "max") return dist::ReduceOp::kMax;
  if (name == "min") return dist::ReduceOp::kMin;
  throw std::invalid_argument("op must be 'sum', 'mean', 'max' or 'min', got '" + name + "'");
}

// allReduce(tensor, op) -> Promise<void>: in place, as torch.distributed.all_reduce.
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    at::Tensor t = NativeTensor::FromValue(info[0], "tensor");  // shares the JS tensor's storage
    const auto op = reduce_op(info[1].As<Napi::String>().Utf8Value());
    return PromiseWorker<Empty>::Start(env, [t, op]() mutable { dist::all_reduce(t, op); return Empty{}; }, Undefined);
  });
}

// broadcast(tensor, src) -> Promise<void>: in place.
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    at::Tensor t = NativeTensor::FromValue(info[0], "tensor");
    const int64_t src = info[1].As<Napi::Number>().Int64Value();
    return PromiseWorker<Empty>::Start(env, [t, src]() mutable { dist::broadcast(t, src); return Empty{}; }, Undefined);
  });
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  return PromiseWorker<Empty>::Start(info.Env(), [] { dist::barrier(); return Empty{}; }, Undefined);
}

// shardIndices(n, rank, world, shuffle, seed, epoch, dropLast, pad) -> number[]: the samples a
// rank takes in one epoch (DistributedSampler's rule), for tests and tools.
Napi::Value ShardIndices(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto num = [&](std::size_t i) { return info[i].As<Napi::Number>().Int64Value(); };
    const at::Tensor idx = dist::shard_indices(num(0), num(1), num(2), info[3].As<Napi::Boolean>().Value(),
                                               static_cast<uint64_t>(num(4)), num(5), info[6].As<Napi::Boolean>().Value(),
                                               info[7].As<Napi::Boolean>().Value());
    const auto a = idx.contiguous();
    Napi::Array out = Napi::Array::New(env, static_cast<std::size_t>(a.numel()));
    const int64_t* p = a.data_ptr<int64_t>();
    for (int64_t i = 0; i < a.numel(); ++i) out.Set(static_cast<uint32_t>(i), static_cast<double>(p[i]));
    return out;
  });
}

}  // namespace

Napi::Object DistributedExports(Napi::Env env) {
  Napi::Object out = Napi::Object::New(env);
  std::string reason;
  out.Set("available", dist::available(&reason));
  out.Set("reason", reason);
  out.Set("init", Napi::Function::New<Init>(env, "init"));
  out.Set("isInitialized", Napi::Function::New<IsInitialized>(env, "isInitialized"));
  out.Set("info", Napi::Function::New<Info>(env, "info"));
  out.Set("destroy", Napi::Function::New<Destroy>(env, "destroy"));
  out.Set("allReduce", Napi::Function::New<AllReduce>(env, "allReduce"));
  out.Set("broadcast", Napi::Function::New<Broadcast>(env, "broadcast"));
  out.Set("barrier", Napi::Function::New<Barrier>(env, "barrier"));
  out.Set("shardIndices", Napi::Function::New<ShardIndices>(env, "shardIndices"));
  return out;
}

}  // namespace densetorch::bindings
