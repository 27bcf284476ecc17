// The one way other threads reach the JS thread: a thread-safe function with an unbounded queue,
// so that no call ever blocks the caller (the compute thread never waits on the JS thread), and
// whose use after the environment began to shut down is refused instead of touching freed memory.
#pragma once

#include <napi.h>

#include <functional>
#include <memory>
#include <mutex>
#include <utility>

#include "errors.h"

namespace densetorch::bindings {

class JsChannel {
 public:
  using OnCall = std::function<void(Napi::Env)>;      // on the JS thread, after each notify()
  using OnFinish = std::function<void(Napi::Env)>;    // on the JS thread, once, after close()
                                                      // (or at shutdown: then env may be closing)

  // Creates the channel on the JS thread. While open it keeps the event loop alive, as a pending
  // AsyncWorker does.
  static std::shared_ptr<JsChannel> Open(Napi::Env env, const char* name, OnCall on_call, OnFinish on_finish) {
    auto channel = std::shared_ptr<JsChannel>(new JsChannel(std::move(on_call), std::move(on_finish)));
    auto* context = new std::shared_ptr<JsChannel>(channel);  // the finalizer's reference
    channel->fn_ = Fn::New(env, name, 0, 1, context, &Finalize, static_cast<void*>(nullptr));
    return channel;
  }

  // Asks for one OnCall on the JS thread; any thread, never blocks. False when the environment
  // is shutting down (the call will never come).
  bool notify() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return usable_ && fn_.NonBlockingCall() == napi_ok;
  }

  // Ends the channel: OnFinish runs on the JS thread after the OnCalls already asked for. Any
  // thread; only the first close counts. False when the environment is shutting down.
  bool close() {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (!usable_ || closed_) return false;
    closed_ = true;
    return fn_.Release() == napi_ok;
  }

  JsChannel(const JsChannel&) = delete;
  JsChannel& operator=(const JsChannel&) = delete;

 private:
  static void Call(Napi::Env env, Napi::Function, std::shared_ptr<JsChannel>* context, void*) {
    if (env == nullptr || !(*context)->on_call_) return;  // no env: it is going, nothing to deliver to
    deliver(env, (*context)->on_call_);
  }

  // A C++ exception never crosses into Node's frames: it becomes the JS exception of the callback
  // (an uncaught one, as a throw from any event callback).
  static void deliver(Napi::Env env, const std::function<void(Napi::Env)>& fn) {
    try {
      fn(env);
    } catch (const Napi::Error& e) {
      e.ThrowAsJavaScriptException();
    } catch (...) {
      to_js_error(env, describe_current_exception()).ThrowAsJavaScriptException();
    }
  }
  static void Finalize(Napi::Env env, void*, std::shared_ptr<JsChannel>* context) {
    std::unique_ptr<std::shared_ptr<JsChannel>> owned(context);
    JsChannel& self = **owned;
    {
      const std::lock_guard<std::mutex> lock(self.mutex_);
      self.usable_ = false;
    }
    if (env != nullptr) deliver(env, self.on_finish_);
  }

  using Fn = Napi::TypedThreadSafeFunction<std::shared_ptr<JsChannel>, void, &JsChannel::Call>;

  JsChannel(OnCall on_call, OnFinish on_finish) : on_call_(std::move(on_call)), on_finish_(std::move(on_finish)) {}

  std::mutex mutex_;
  Fn fn_;
  bool usable_ = true;   // false once Node finalized the function (after close(), or at shutdown)
  bool closed_ = false;
  OnCall on_call_;
  OnFinish on_finish_;
};

}  // namespace densetorch::bindings
