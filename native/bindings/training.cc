// fit / evaluate bindings. fit runs the C++ training loop on the compute thread and reports each
// batch and epoch to JS through a JsChannel without waiting; the promise settles when the
// channel closes, after every report has been delivered.
#include "../core/errors.h"
#include "../core/trainer.h"
#include "data_source.h"
#include "errors.h"
#include "js_channel.h"
#include "model.h"
#include "tensor.h"
#include "worker.h"

#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
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
  f.schedule.warmup_epochs = number(sched, "warmupEpochs");
  f.schedule.warmup_start_factor = number(sched, "warmupStartFactor");
  f.label_smoothing = number(o, "labelSmoothing");
  f.clip_grad_norm = number(o, "clipGradNorm");
  f.mix.mixup_alpha = number(o, "mixupAlpha");
  f.mix.cutmix_alpha = number(o, "cutmixAlpha");
  f.accumulate_steps = static_cast<int64_t>(number(o, "accumulateSteps"));
  if (o.Get("ema").IsObject()) {
    auto ema = o.Get("ema").As<Napi::Object>();
    f.ema.decay = number(ema, "decay");
    f.ema.every_steps = static_cast<int64_t>(number(ema, "everySteps"));
    f.ema.final_weights = ema.Get("weights").As<Napi::String>().Utf8Value() == "ema";
  }
  if (o.Get("checkpointPath").IsString()) {
    f.checkpoint_path = o.Get("checkpointPath").As<Napi::String>().Utf8Value();
    f.checkpoint_every = static_cast<int64_t>(number(o, "checkpointEvery"));
    f.checkpoint_steps = static_cast<int64_t>(number(o, "checkpointSteps"));
  }
  if (o.Get("resumeFrom").IsString()) f.resume_from = o.Get("resumeFrom").As<Napi::String>().Utf8Value();
  f.resume_auto = o.Get("resumeAuto").ToBoolean().Value();
  if (o.Get("precision").IsString()) f.precision = parse_precision(o.Get("precision").As<Napi::String>().Utf8Value());
  return f;
}

Napi::Value number_or_null(Napi::Env env, const std::optional<double>& v) {
  return v ? Napi::Value(Napi::Number::New(env, *v)) : env.Null();
}

Napi::Object epoch_to_js(Napi::Env env, const EpochReport& r) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("epoch", r.epoch);
  o.Set("loss", r.loss);
  o.Set("accuracy", r.accuracy);
  o.Set("valLoss", number_or_null(env, r.val_loss));
  o.Set("valAccuracy", number_or_null(env, r.val_accuracy));
  o.Set("emaValLoss", number_or_null(env, r.ema_val_loss));
  o.Set("emaValAccuracy", number_or_null(env, r.ema_val_accuracy));
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

Napi::Value history_to_js(Napi::Env env, History& history) {
  Napi::Object out = Napi::Object::New(env);
  Napi::Array epochs = Napi::Array::New(env, history.epochs.size());
  for (uint32_t i = 0; i < history.epochs.size(); ++i) epochs.Set(i, epoch_to_js(env, history.epochs[i]));
  out.Set("epochs", epochs);
  out.Set("stopped", history.stopped);
  return out;
}

using Event = std::variant<BatchReport, EpochReport>;

// Undelivered batch reports kept before the newest replaces the last one (latest wins): the
// training never waits for the JS thread, and a JS thread busy elsewhere gets the reports it
// missed as one, with the batch number telling how far training went. Epoch reports are never
// merged or dropped.
constexpr std::size_t kMaxPendingBatches = 64;

// Everything a running fit shares between the compute thread (the run, the reports) and the JS
// thread (the callbacks, the promise); on_event and the outcome's promise are used on the JS thread only.
struct FitJob {
  DenseNet model{nullptr};
  std::shared_ptr<BatchSource> train, validation;
  FitOptions options;
  std::shared_ptr<std::atomic<bool>> stop;
  bool report_batches = false;
  Settlement<History> outcome;  // its `done` is set once the model is held
  Napi::FunctionReference on_event;

  std::mutex mutex;  // guards the reports below
  std::deque<Event> events;
  std::size_t pending_batches = 0;
  bool signalled = false;  // a delivery is asked for and has not taken the events yet

  explicit FitJob(Napi::Env env) : outcome(env, history_to_js, nullptr) {}

  // On the compute thread: queues a report; true when the JS thread must be told.
  bool queue_report(Event event) {
    const std::lock_guard<std::mutex> lock(mutex);
    const bool batch = std::holds_alternative<BatchReport>(event);
    if (batch && pending_batches >= kMaxPendingBatches && !events.empty() && std::holds_alternative<BatchReport>(events.back())) {
      events.back() = std::move(event);
    } else {
      events.push_back(std::move(event));
      if (batch) ++pending_batches;
    }
    return !std::exchange(signalled, true);
  }

  // On the JS thread: hands the queued reports to the callback, in order.
  void deliver(Napi::Env env) {
    std::deque<Event> taken;
    {
      const std::lock_guard<std::mutex> lock(mutex);
      taken.swap(events);
      pending_batches = 0;
      signalled = false;
    }
    if (on_event.IsEmpty()) return;
    for (const Event& event : taken) {
      if (std::holds_alternative<BatchReport>(event)) {
        on_event.Call({Napi::String::New(env, "batch"), batch_to_js(env, std::get<BatchReport>(event))});
      } else {
        on_event.Call({Napi::String::New(env, "epoch"), epoch_to_js(env, std::get<EpochReport>(event))});
      }
    }
  }

  // On the JS thread, once, after the run (or when the environment shuts down during it).
  void settle(Napi::Env env) {
    if (!outcome.finished.load()) {  // shutting down mid-run: end the run soon
      stop->store(true);
    } else {
      try {
        deliver(env);
      } catch (...) {  // a throwing callback: the run is over; the promise still settles
      }
    }
    on_event.Reset();
    outcome.settle(env);
  }
};

}  // namespace

// fit(dataset, options, onEvent, reportBatches) -> Promise<{ epochs, stopped }>
Napi::Value NativeModel::Fit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guarded(env, [&]() -> Napi::Value {
    auto job = std::make_shared<FitJob>(env);
    job->model = model_;
    auto js_options = info[1].As<Napi::Object>();
    job->options = options_from(js_options);
    job->train = source_from(info[0], job->options.batch_size, job->options.shuffle);
    if (js_options.Get("validationData").IsObject())
      job->validation = source_from(js_options.Get("validationData"), job->options.batch_size, /*shuffle=*/false);
    job->on_event = Napi::Persistent(info[2].As<Napi::Function>());
    job->report_batches = info[3].As<Napi::Boolean>().Value();  // the data sets are validated by fit() itself
    job->outcome.done = hold(env);
    stop_->store(false);
    job->stop = stop_;
    Napi::Promise promise = job->outcome.deferred.Promise();
    auto channel = JsChannel::Open(env, "densetorch.fit", [job](Napi::Env e) { job->deliver(e); }, [job](Napi::Env e) { job->settle(e); });
    // A training run on the compute thread. Its reports are queued and the JS thread is told
    // without waiting (JsChannel): the run never waits for the JS thread, so a JS thread that
    // waits for the compute thread (forward) is served between two steps.
    post_to_compute_thread(
        [job, channel] {
          const auto report = [&](Event event) {
            if (job->queue_report(std::move(event)) && !channel->notify()) job->stop->store(true);  // the environment is going
          };
          Callbacks cb;
          cb.stop = job->stop.get();
          if (job->report_batches) cb.on_batch = [&](const BatchReport& r) { report(r); };
          cb.on_epoch = [&](const EpochReport& r) { report(r); };
          auto run = [&] { return fit(job->model, *job->train, job->validation.get(), job->options, cb); };
          job->outcome.run(run);
          channel->close();
        },
        /*is_long=*/true);
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
    // A thread of its own waits for the batches (a streamed data set is decoded on the JS thread)
    // and has each computed on the compute thread, between other work: no thread of libuv's pool
    // waits, and the compute thread never waits for data.
    return settle_from<Evaluation>(
        env, "densetorch.evaluate", [model = model_, data, precision]() mutable { return evaluate(model, *data, precision); },
        [](Napi::Env e, Evaluation& r) -> Napi::Value {
          Napi::Object o = Napi::Object::New(e);
          o.Set("loss", r.loss);
          o.Set("accuracy", r.accuracy);
          o.Set("count", static_cast<double>(r.count));
          return o;
        },
        done,
        [](std::function<void()> run) {
          std::thread([run = std::move(run)] {
            keep_this_thread_serial();
            run();
          }).detach();
        });
  });
}

}  // namespace densetorch::bindings
