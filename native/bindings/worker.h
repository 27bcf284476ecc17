// Promise-returning work off the main thread (libuv's pool). The work owns only C++ values;
// exceptions are caught in Execute and the promise is rejected with the mapped JS error.
#pragma once

#include <napi.h>

#include <functional>
#include <optional>
#include <utility>

#include "../core/compute_thread.h"
#include "errors.h"

namespace densetorch::bindings {

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
