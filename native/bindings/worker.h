// Promise-returning work off the main thread. The work owns only C++ values; what it throws is
// caught where it runs and the promise is rejected with the mapped JS error.
//   ComputePromise: LibTorch work (predict, classify, serve().predict) queued on the compute thread and
//     settled from there through a JsChannel: waiting for the compute thread holds no thread.
//   PromiseWorker: file I/O on libuv's pool (save, reading weights, collectives), which never
//     waits for the compute thread.
#pragma once

#include <napi.h>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <utility>

#include "../core/compute_thread.h"
#include "errors.h"
#include "js_channel.h"

namespace densetorch::bindings {

// What a promise settles with, filled on another thread and settled on the JS thread. `done`
// (releasing the model's hold) and `to_js` run and are dropped on the JS thread only.
template <typename Result>
struct Settlement {
  using ToJs = std::function<Napi::Value(Napi::Env, Result&)>;
  using Done = std::function<void()>;

  Settlement(Napi::Env env, ToJs t, Done d) : deferred(Napi::Promise::Deferred::New(env)), to_js(std::move(t)), done(std::move(d)) {}

  // Runs `work` (any thread), keeping its result or failure.
  template <typename Work>
  void run(Work& work) {
    try {
      result.emplace(work());
    } catch (...) {
      failure = describe_current_exception();
    }
    finished.store(true);
  }

  // On the JS thread, once. When the environment shuts down before the work finished, only the
  // hold is released (nothing is left to settle to).
  void settle(Napi::Env env) {
    if (done) done();
    done = nullptr;
    if (finished.load()) {
      try {
        if (result) {
          deferred.Resolve(to_js(env, *result));
        } else {
          deferred.Reject(to_js_error(env, failure).Value());
        }
      } catch (const Napi::Error& e) {
        deferred.Reject(e.Value());
      } catch (...) {
        deferred.Reject(to_js_error(env, describe_current_exception()).Value());
      }
    }
    to_js = nullptr;
  }

  Napi::Promise::Deferred deferred;
  ToJs to_js;
  Done done;
  std::optional<Result> result;
  Failure failure;
  std::atomic<bool> finished{false};
};

// Starts `work` off the JS thread through `launch` (given the function to run, it runs it on
// another thread and returns at once) and returns the promise, settled from there through a
// JsChannel. `done` runs on the main thread before settling.
template <typename Result, typename Launch>
Napi::Promise settle_from(Napi::Env env, const char* name, std::function<Result()> work, typename Settlement<Result>::ToJs to_js,
                          typename Settlement<Result>::Done done, Launch&& launch) {
  auto settlement = std::make_shared<Settlement<Result>>(env, std::move(to_js), std::move(done));
  Napi::Promise promise = settlement->deferred.Promise();
  auto channel = JsChannel::Open(env, name, nullptr, [settlement](Napi::Env e) { settlement->settle(e); });
  launch(std::function<void()>([settlement, channel, work = std::move(work)]() mutable {
    settlement->run(work);
    channel->close();
  }));
  return promise;
}

// LibTorch work queued on the compute thread: waiting for it holds no thread.
template <typename Result>
class ComputePromise {
 public:
  using Work = std::function<Result()>;
  using ToJs = typename Settlement<Result>::ToJs;
  using Done = typename Settlement<Result>::Done;

  // Queues `work` on the compute thread; returns the promise. `done` runs on the main thread
  // before settling.
  static Napi::Promise Start(Napi::Env env, Work work, ToJs to_js, Done done = {}) {
    return settle_from<Result>(env, "densetorch.compute", std::move(work), std::move(to_js), std::move(done),
                               [](std::function<void()> run) { post_to_compute_thread(std::move(run)); });
  }
};

template <typename Result>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  using Work = std::function<Result()>;
  using ToJs = std::function<Napi::Value(Napi::Env, Result&)>;
  using Done = std::function<void()>;

  // Queues `work`; returns the promise. `done` runs on the main thread before settling.
  static Napi::Promise Start(Napi::Env env, Work work, ToJs to_js, Done done = {}) {
    auto* worker = new PromiseWorker(env, std::move(work), std::move(to_js), std::move(done));  // libuv owns it until completion
    Napi::Promise promise = worker->deferred_.Promise();
    worker->Queue();
    return promise;
  }

 protected:
  void Execute() override {
    try {
      keep_this_thread_serial();  // libuv's threads start no OpenMP pools (compute_thread.h)
      result_.emplace(work_());
    } catch (...) {
      failure_ = describe_current_exception();
      SetError(failure_.message);
    }
  }

  void OnOK() override {
    Napi::Env env = Env();
    if (done_) done_();
    try {
      deferred_.Resolve(to_js_(env, *result_));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    } catch (...) {
      deferred_.Reject(to_js_error(env, describe_current_exception()).Value());
    }
  }

  void OnError(const Napi::Error&) override {
    if (done_) done_();
    deferred_.Reject(to_js_error(Env(), failure_).Value());
  }

 private:
  PromiseWorker(Napi::Env env, Work work, ToJs to_js, Done done)
      : Napi::AsyncWorker(env, "densetorch"), deferred_(Napi::Promise::Deferred::New(env)), work_(std::move(work)),
        to_js_(std::move(to_js)), done_(std::move(done)) {}

  Napi::Promise::Deferred deferred_;
  Work work_;
  ToJs to_js_;
  Done done_;
  std::optional<Result> result_;
  Failure failure_;
};

}  // namespace densetorch::bindings
