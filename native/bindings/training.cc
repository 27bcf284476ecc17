// fit / evaluate bindings. fit runs the C++ training loop on its own thread and reports each
// batch and epoch to JS through a ThreadSafeFunction; the promise settles in the TSFN's
// finalizer, after every report has been delivered.
#include "../core/errors.h"
#include "../core/trainer.h"
#include "data_source.h"
#include "errors.h"
#include "model.h"
#include "tensor.h"
#include "worker.h"

#include <memory>
#include <thread>
#include <variant>

namespace densetorch::bindings {

namespace {

double number(const Napi::Object& o, const char* key) { return o.Get(key).As<Napi::Number>().DoubleValue(); }

// The validated JS options (lib/training.ts) -> FitOptions.
FitOptions options_from(const Napi::Object& o) {
  FitOptions f;
  f.epochs = static_cast<int64_t>(number(o, "epochs"));
  f.batch_size = static_cast<int64_t>(number(o, "batchSize"));
  f.shuffle = o.Get("shuffle").As<Napi::Boolean>().Value();
  f.seed = static_cast<uint64_t>(number(o, "seed"));
  f.drop_last = o.Get("dropLast").As<Napi::Boolean>().Value();
  auto opt = o.Get("optimizer").As<Napi::Object>();
  const std::string type = opt.Get("type").As<Napi::String>().Utf8Value();
  f.optimizer.type = type == "adam" ? OptimizerOptions::Type::kAdam : type == "adamw" ? OptimizerOptions::Type::kAdamW : OptimizerOptions::Type::kSgd;
  f.optimizer.lr = number(opt, "lr");
  f.optimizer.weight_decay = number(opt, "weightDecay");
  if (f.optimizer.type == OptimizerOptions::Type::kSgd) {
    f.optimizer.momentum = number(opt, "momentum");
    f.optimizer.nesterov = opt.Get("nesterov").As<Napi::Boolean>().Value();
  } else {
    auto betas = opt.Get("betas").As<Napi::Array>();
    f.optimizer.beta1 = betas.Get(0u).As<Napi::Number>().DoubleValue();
    f.optimizer.beta2 = betas.Get(1u).As<Napi::Number>().DoubleValue();
  }
  auto sched = o.Get("schedule").As<Napi::Object>();
  const std::string stype = sched.Get("type").As<Napi::String>().Utf8Value();
  if (stype == "multistep") {
    f.schedule.type = ScheduleOptions::Type::kMultiStep;
    f.schedule.milestones.clear();
    auto m = sched.Get("milestones").As<Napi::Array>();
    for (uint32_t i = 0; i < m.Length(); ++i) f.schedule.milestones.push_back(m.Get(i).As<Napi::Number>().DoubleValue());
    f.schedule.gamma = number(sched, "gamma");
  } else if (stype == "cosine") {
    f.schedule.type = ScheduleOptions::Type::kCosine;
  }
  if (o.Get("checkpointPath").IsString()) {
    f.checkpoint_path = o.Get("checkpointPath").As<Napi::String>().Utf8Value();
    f.checkpoint_every = static_cast<int64_t>(number(o, "checkpointEvery"));
  }
  if (o.Get("resumeFrom").IsString()) f.resume_from = o.Get("resumeFrom").As<Napi::String>().Utf8Value();
  if (o.Get("precision").IsString()) f.precision = parse_precision(o.Get("precision").As<Napi::String>().Utf8Value());
  return f;
}

Napi::Object epoch_to_js(Napi::Env env, const EpochReport& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("epoch", r.epoch);
  o.Set("loss", r.loss);
  o.Set("accuracy", r.accuracy);
  o.Set("valLoss", r.val_loss ? Napi::Value(Napi::Number::New(env, *r.val_loss)) : env.Null());
  o.Set("valAccuracy", r.val_accuracy ? Napi::Value(Napi::Number::New(env, *r.val_accuracy)) : env.Null());
  o.Set("lr", r.lr);
  o.Set("seconds", r.seconds);
  o.Set("imagesPerSecond", r.images_per_second);
  o.Set("dataWaitShare", r.data_wait_share);
  return o;
}

Napi::Object batch_to_js(Napi::Env env, const BatchReport& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("epoch", r.epoch);
  o.Set("batch", r.batch);
  o.Set("batches", r.batches);
  o.Set("loss", r.loss);
  o.Set("accuracy", r.accuracy);
  o.Set("lr", r.lr);
  o.Set("imagesPerSecond", r.images_per_second);
  return o;
}

using Event = std::variant<BatchReport, EpochReport>;

// Everything the training thread owns; the finalizer reads the outcome on the main thread.
struct FitJob {
  DenseNet model{nullptr};
  std::shared_ptr<BatchSource> train, validation;
  FitOptions options;
  std::shared_ptr<std::atomic<bool>> stop;
  bool report_batches = false;
  std::thread thread;
  std::optional<History> history;
  Failure failure;
  Napi::Promise::Deferred deferred;
  std::function<void()> done;
  explicit FitJob(Napi::Env env) : deferred(Napi::Promise::Deferred::New(env)) {}
};

void call_js(Napi::Env env, Napi::Function callback, FitJob*, Event* event) {
  std::unique_ptr<Event> owned(event);
  if (env == nullptr || callback.IsEmpty()) return;
  if (std::holds_alternative<BatchReport>(*owned)) {
    callback.Call({Napi::String::New(env, "batch"), batch_to_js(env, std::get<BatchReport>(*owned))});
  } else {
    callback.Call({Napi::String::New(env, "epoch"), epoch_to_js(env, std::get<EpochReport>(*owned))});
  }
}

using Reporter = Napi::TypedThreadSafeFunction<FitJob, Event, call_js>;

void finish(Napi::Env env, void*, FitJob* job) {
  std::unique_ptr<FitJob> owned(job);
  owned->thread.join();
  if (owned->done) owned->done();
  if (!owned->history) {
    owned->deferred.Reject(to_js_error(env, owned->failure).Value());
    return;
  }
  Napi::Object out = Napi::Object::New(env);
  Napi::Array epochs = Napi::Array::New(env, owned->history->epochs.size());
  for (uint32_t i = 0; i < owned->history->epochs.size(); ++i) epochs.Set(i, epoch_to_js(env, owned->history->epochs[i]));
  out.Set("epochs", epochs);
  out.Set("stopped", owned->history->stopped);
  owned->deferred.Resolve(out);
}

}  // namespace

// fit(dataset, options, onEvent, reportBatches) -> Promise<{ epochs, stopped }>
Napi::Value NativeModel::Fit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto job = std::make_unique<FitJob>(env);
    job->model = model_;
    auto js_options = info[1].As<Napi::Object>();
    job->options = options_from(js_options);
    job->train = source_from(info[0], job->options.batch_size, job->options.shuffle);
    if (js_options.Get("validationData").IsObject())
      job->validation = source_from(js_options.Get("validationData"), job->options.batch_size, /*shuffle=*/false);
    job->report_batches = info[3].As<Napi::Boolean>().Value();  // the data sets are validated by fit() itself
    job->done = hold(env);
    stop_->store(false);
    job->stop = stop_;
    Napi::Promise promise = job->deferred.Promise();
    FitJob* raw = job.release();  // owned by the TSFN finalizer from here on
    // A queue of one report: the training thread runs at most one batch ahead of the JS callbacks,
    // so an abort from onBatchEnd stops it within one batch.
    Reporter reporter = Reporter::New(env, info[2].As<Napi::Function>(), "densetorch.fit", 1, 1, raw, finish, static_cast<void*>(nullptr));
    raw->thread = std::thread([raw, reporter]() mutable {
      Callbacks cb;
      cb.stop = raw->stop.get();
      if (raw->report_batches) cb.on_batch = [&](const BatchReport& r) { reporter.BlockingCall(new Event(r)); };
      cb.on_epoch = [&](const EpochReport& r) { reporter.BlockingCall(new Event(r)); };
      try {
        raw->history = fit(raw->model, *raw->train, raw->validation.get(), raw->options, cb);
      } catch (...) {
        raw->failure = describe_current_exception();
      }
      reporter.Release();
    });
    return promise;
  });
}

Napi::Value NativeModel::StopFit(const Napi::CallbackInfo& info) {
  stop_->store(true);
  return info.Env().Undefined();
}

// evaluate(dataset, batchSize, precision) -> Promise<{ loss, accuracy, count }>
Napi::Value NativeModel::Evaluate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    const auto batch = static_cast<int64_t>(info[1].As<Napi::Number>().Int64Value());
    std::shared_ptr<BatchSource> data = source_from(info[0], batch, /*shuffle=*/false);
    const Precision precision = parse_precision(info[2].As<Napi::String>().Utf8Value());
    auto done = hold(env);
    return PromiseWorker<Evaluation>::Start(
        env,
        [model = model_, data, precision]() mutable { return evaluate(model, *data, precision); },
        [](Napi::Env e, Evaluation& r) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("loss", r.loss);
          o.Set("accuracy", r.accuracy);
          o.Set("count", static_cast<double>(r.count));
          return o;
        },
        done);
  });
}

}  // namespace densetorch::bindings
