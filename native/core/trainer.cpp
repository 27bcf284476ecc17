#include "trainer.h"

#include "allocator.h"
#include "atomic_file.h"
#include "compute_thread.h"
#include "distributed.h"
#include "errors.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <numbers>
#include <utility>

namespace densetorch {

namespace {

using Clock = std::chrono::steady_clock;

// A batch on the model's device. Host batches bound for a GPU go through page-locked memory
// (the host caching allocator reuses it) and are copied without blocking the host, as a PyTorch
// DataLoader with pin_memory=True and .to(device, non_blocking=True).
at::Tensor to_device(const at::Tensor& t, const at::Device& device) {
  if (t.device() == device) return t;
  if (device.is_cuda() && t.device().is_cpu()) return t.pin_memory().to(device, /*non_blocking=*/true);
  return t.to(device);
}

// The global CPU generator (dropout draws from it); a handle sharing its state.
at::Generator global_generator() { return at::detail::getDefaultCPUGenerator(); }

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// torch::optim::SGD whose step updates all parameters of a group with a few multi-tensor
// (foreach) operations instead of several kernels per parameter: the same arithmetic in the same
// order (PyTorch's own SGD uses foreach on CUDA by default), the same state and checkpoints. On a
// GPU a DenseNet's several hundred small parameters otherwise cost thousands of kernel launches.
class ForeachSGD : public torch::optim::SGD {
 public:
  using torch::optim::SGD::SGD;

  at::Tensor step(LossClosure closure = nullptr) override {
    torch::NoGradGuard no_grad;
    at::Tensor loss;
    if (closure) {
      at::AutoGradMode enable_grad(true);
      loss = closure();
    }
    for (auto& group : param_groups_) {
      const auto& options = static_cast<const torch::optim::SGDOptions&>(group.options());
      std::vector<at::Tensor> params, grads, bufs, with_buf;
      for (auto& p : group.params()) {
        if (!p.grad().defined()) continue;
        params.push_back(p);
        grads.push_back(p.grad());
      }
      if (params.empty()) continue;
      // d = grad + weight_decay * p (a new tensor: the gradient itself is left as it is)
      std::vector<at::Tensor> d = options.weight_decay() != 0 ? at::_foreach_add(grads, params, options.weight_decay()) : grads;
      if (options.momentum() != 0) {
        std::vector<at::Tensor> d_with_buf;
        for (std::size_t i = 0; i < params.size(); ++i) {
          auto it = state_.find(params[i].unsafeGetTensorImpl());
          if (it == state_.end()) {  // first step: the buffer starts as d
            auto state = std::make_unique<torch::optim::SGDParamState>();
            state->momentum_buffer(d[i].clone().detach());
            bufs.push_back(state->momentum_buffer());
            state_[params[i].unsafeGetTensorImpl()] = std::move(state);
          } else {
            bufs.push_back(static_cast<torch::optim::SGDParamState&>(*it->second).momentum_buffer());
            with_buf.push_back(bufs.back());
            d_with_buf.push_back(d[i]);
          }
        }
        if (!with_buf.empty()) {  // buf = momentum * buf + (1 - dampening) * d
          at::_foreach_mul_(with_buf, options.momentum());
          at::_foreach_add_(with_buf, d_with_buf, 1 - options.dampening());
        }
        d = options.nesterov() ? at::_foreach_add(d, bufs, options.momentum()) : bufs;
      }
      at::_foreach_add_(params, d, -1 * options.lr());
    }
    return loss;
  }
};

std::unique_ptr<torch::optim::Optimizer> make_optimizer(DenseNet& model, const OptimizerOptions& o) {
  using Type = OptimizerOptions::Type;
  switch (o.type) {
    case Type::kSgd:
      return std::make_unique<ForeachSGD>(
          model->parameters(),
          torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov).weight_decay(o.weight_decay));
    case Type::kAdam:
      return std::make_unique<torch::optim::Adam>(
          model->parameters(), torch::optim::AdamOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
    case Type::kAdamW:
      return std::make_unique<torch::optim::AdamW>(
          model->parameters(), torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).weight_decay(o.weight_decay));
  }
  throw std::invalid_argument("unknown optimizer");
}

void set_lr(torch::optim::Optimizer& optimizer, double lr) {
  for (auto& group : optimizer.param_groups()) group.options().set_lr(lr);
}

// Restores the model's train/eval mode on scope exit.
struct ModeGuard {
  DenseNet& model;
  bool was_training;
  explicit ModeGuard(DenseNet& m) : model(m), was_training(m->is_training()) {}
  ~ModeGuard() { model->train(was_training); }
};

// What a checkpoint holds besides the model and the optimizer: the epochs completed, the position
// inside the next one, the optimizer steps so far, every rank's generators and the weight average.
struct RunState {
  RunState(at::Generator data_generator, at::Generator mix_generator)
      : data(std::move(data_generator)), mix(std::move(mix_generator)) {}
  int64_t epoch = 0;  // epochs completed
  int64_t steps = 0;
  at::Generator data, mix;
  std::optional<WeightAverage> ema;
  bool ema_restored = false;  // the average came from the checkpoint
  // Inside epoch `epoch` (a checkpoint every N steps): its batches done and its figures so far.
  struct Progress {
    int64_t batch = 0, correct = 0, seen = 0;
    double loss_sum = 0, wait_seconds = 0;
  } progress;
  at::Tensor data_at_epoch_start;  // the data generator's state when the epoch began (its order is drawn from it)
  int64_t rank = 0, world = 1;     // whose generators this process restores
};

// This rank's generator states: data, mixing, dropout, data at the epoch's start.
at::Tensor own_generator_states(const RunState& run) {
  return at::stack({run.data.get_state(), run.mix.get_state(), global_generator().get_state(), run.data_at_epoch_start});
}

void restore_generator_states(RunState& run, const at::Tensor& states) {
  const auto row = [&](int64_t i) { return states[i].clone(); };  // a generator takes a tensor of its own
  run.data.set_state(row(0));
  run.mix.set_state(row(1));
  global_generator().set_state(row(2));
  run.data_at_epoch_start = row(3);
}

void save_checkpoint(const std::string& path, DenseNet& model, torch::optim::Optimizer& optimizer, const RunState& run,
                     const at::Tensor& rank_states) {
  torch::serialize::OutputArchive archive;
  model->save(archive);
  torch::serialize::OutputArchive optimizer_archive;
  optimizer.save(optimizer_archive);
  archive.write("densetorch.optimizer", optimizer_archive);
  archive.write("densetorch.epoch", torch::tensor(run.epoch));
  archive.write("densetorch.steps", torch::tensor(run.steps));
  archive.write("densetorch.rng.data", run.data.get_state());
  archive.write("densetorch.rng.mix", run.mix.get_state());
  archive.write("densetorch.rng.global", global_generator().get_state());
  archive.write("densetorch.rng.ranks", rank_states);  // [world, 4, state]: every rank's, in rank order
  const auto& p = run.progress;
  archive.write("densetorch.progress", torch::tensor({p.batch, p.correct, p.seen}, at::kLong));
  archive.write("densetorch.progress.sums", torch::tensor({p.loss_sum, p.wait_seconds}, at::kDouble));
  if (run.ema) run.ema->save(archive);
  try {
    write_atomically(path, [&](const WriteBytes& write) {
      archive.save_to([&](const void* data, std::size_t n) {
        write(data, n);
        return n;
      });
    });
  } catch (const std::runtime_error& e) {
    throw TrainingError(std::string("could not write the checkpoint: ") + e.what());
  }
}

// Loads a checkpoint into the model, the optimizer and `run` (epochs completed, steps, generators,
// the weight average when both the run and the checkpoint have one).
void load_checkpoint(const std::string& path, DenseNet& model, torch::optim::Optimizer& optimizer, RunState& run) {
  if (!std::filesystem::is_regular_file(path)) throw TrainingError("checkpoint " + path + " does not exist");
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(path);
    model->load(archive);
    torch::serialize::InputArchive optimizer_archive;
    archive.read("densetorch.optimizer", optimizer_archive);
    optimizer.load(optimizer_archive);
    at::Tensor epoch, steps, data_rng, mix_rng, global_rng;
    archive.read("densetorch.epoch", epoch);
    archive.read("densetorch.rng.data", data_rng);
    archive.read("densetorch.rng.global", global_rng);
    run.epoch = epoch.item<int64_t>();
    if (archive.try_read("densetorch.steps", steps)) run.steps = steps.item<int64_t>();  // older checkpoints: 0
    if (archive.try_read("densetorch.rng.mix", mix_rng)) run.mix.set_state(mix_rng);
    run.data.set_state(data_rng);
    global_generator().set_state(global_rng);
    run.data_at_epoch_start = data_rng;
    at::Tensor progress, sums, rank_states;
    if (archive.try_read("densetorch.progress", progress)) {
      archive.read("densetorch.progress.sums", sums);
      run.progress = {progress[0].item<int64_t>(), progress[1].item<int64_t>(), progress[2].item<int64_t>(),
                      sums[0].item<double>(), sums[1].item<double>()};
    }
    if (archive.try_read("densetorch.rng.ranks", rank_states)) {
      if (rank_states.size(0) == run.world) {
        restore_generator_states(run, rank_states[run.rank]);
      } else if (run.progress.batch > 0) {
        throw TrainingError("cannot resume from " + path + ": it was written inside epoch " +
                            std::to_string(run.epoch + 1) + " by a group of " + std::to_string(rank_states.size(0)) +
                            " processes, and this one has " + std::to_string(run.world) +
                            " (resume it with as many, or from a checkpoint written at the end of an epoch)");
      }
    }
    if (run.ema) run.ema_restored = run.ema->load(archive);
  } catch (const c10::Error& e) {
    throw TrainingError("cannot resume from " + path + ": " + e.msg().substr(0, e.msg().find('\n')));
  }
}

// The data-parallel group fit and evaluate run in, if one is initialized.
struct Parallel {
  bool on = false;
  int64_t rank = 0, world = 1;
};

Parallel parallel() {
  if (!distributed::initialized()) return {};
  const auto g = distributed::info();
  return {true, g.rank, g.world_size};
}

// Gradient buckets, as DDP's default bucket_cap_mb.
constexpr int64_t kBucketBytes = 25LL << 20;

// Runs `body`. In a group, an error only this rank sees (bad data, a checkpoint it cannot write)
// is first reported to the other ranks, whose collectives then fail at once naming this rank,
// instead of waiting for the timeout.
template <typename Body>
auto tell_others_on_error(const Parallel& par, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const DistributedError&) {
    throw;
  } catch (const c10::Error& e) {
    if (par.on) distributed::report_failure(e.what_without_backtrace());
    throw;
  } catch (const std::exception& e) {
    if (par.on) distributed::report_failure(e.what());
    throw;
  }
}

}  // namespace

double warmup_factor(const ScheduleOptions& s, int64_t step, int64_t batches) {
  if (s.warmup_epochs <= 0) return 1.0;
  const double total = s.warmup_epochs * static_cast<double>(batches > 0 ? batches : 1);
  const double t = static_cast<double>(step);
  if (t >= total) return 1.0;
  return s.warmup_start_factor + (1.0 - s.warmup_start_factor) * t / total;
}

double scheduled_lr(const FitOptions& o, int64_t epoch) {
  const double lr = o.optimizer.lr;
  switch (o.schedule.type) {
    case ScheduleOptions::Type::kConstant: return lr;
    case ScheduleOptions::Type::kMultiStep: {
      double out = lr;
      for (double m : o.schedule.milestones)
        if (epoch >= static_cast<int64_t>(std::floor(m * static_cast<double>(o.epochs)))) out *= o.schedule.gamma;
      return out;
    }
    case ScheduleOptions::Type::kCosine:
      return lr * 0.5 * (1.0 + std::cos(std::numbers::pi * static_cast<double>(epoch) / static_cast<double>(o.epochs)));
  }
  return lr;
}

Evaluation evaluate(DenseNet& model, const Dataset& data, int64_t batch_size, Precision precision) {
  TensorSource source(data, batch_size, /*shuffle=*/false);
  return evaluate(model, source, precision);
}

Evaluation evaluate(DenseNet& model, BatchSource& data, Precision precision, const std::atomic<bool>* stop) {
  const Parallel par = parallel();
  return tell_others_on_error(par, [&] {
  if (par.on) data.shard(par.rank, par.world, /*drop_last=*/false, /*seed=*/0);
  data.check(*model);
  const HeapReuseScope reuse;  // see predict
  ModeGuard mode(model);
  model->eval();
  const auto device = model->parameters().front().device();
  at::Generator unused = at::detail::createCPUGenerator(0);
  double loss_sum = 0;
  int64_t correct = 0, n = 0;
  data.start_epoch(0, /*train=*/false, unused);
  while (auto batch = data.next(unused, stop)) {  // waits for the data here, computes there
    on_compute_thread([&] {
      torch::NoGradGuard no_grad;
      PrecisionScope scope(precision, device);  // autocast's cast cache is the computing thread's
      at::Tensor x = to_device(batch->first, device);
      at::Tensor y = to_device(batch->second, device);
      at::Tensor out = model->forward(x).to(at::kFloat);
      loss_sum += torch::nn::functional::cross_entropy(out, y, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kSum)).item<double>();
      correct += out.argmax(1).eq(y).sum().item<int64_t>();
      n += x.size(0);
    });
  }
  bool stopped = stop && stop->load();
  if (par.on) {  // the group's figures; every rank takes part, stopped or not
    at::Tensor sums = at::tensor({loss_sum, static_cast<double>(correct), static_cast<double>(n), stopped ? 1.0 : 0.0}, at::kDouble);
    distributed::all_reduce(sums, distributed::ReduceOp::kSum);
    loss_sum = sums[0].item<double>();
    correct = static_cast<int64_t>(sums[1].item<double>());
    n = static_cast<int64_t>(sums[2].item<double>());
    stopped = sums[3].item<double>() > 0;
  }
  if (stopped) return Evaluation{0, 0, 0};
  if (n == 0) throw DataError("the evaluation data delivered no batch");
  return Evaluation{loss_sum / static_cast<double>(n), static_cast<double>(correct) / static_cast<double>(n), n};
  });
}

namespace {

std::vector<at::Tensor> predict_here(DenseNet& model, const std::vector<at::Tensor>& inputs, int64_t batch_size,
                                     Precision precision) {
  // Large blocks from densetorch's heap, kept there for the next call (serving calls predict over
  // and over): BC-100 batch 256 1.05-1.12 vs 1.49-1.79 s per call, DenseNet-121 batch 32
  // 0.78-0.81 vs 0.96-1.05 s, from fresh pages on every call before.
  const HeapReuseScope reuse;
  ModeGuard mode(model);
  model->eval();
  torch::NoGradGuard no_grad;
  PrecisionScope scope(precision, inputs.front().device());
  const at::Tensor x = inputs.size() == 1 ? inputs.front() : at::cat(inputs, 0);
  std::vector<at::Tensor> outs;
  for (int64_t start = 0; start < x.size(0); start += batch_size) {
    outs.push_back(model->forward(x.narrow(0, start, std::min(batch_size, x.size(0) - start))).to(at::kFloat));
  }
  const at::Tensor out = outs.size() == 1 ? outs.front() : at::cat(outs, 0);
  if (inputs.size() == 1) return {out};
  std::vector<int64_t> sizes;
  for (const auto& input : inputs) sizes.push_back(input.size(0));
  std::vector<at::Tensor> split;
  for (const auto& part : out.split_with_sizes(sizes, 0)) split.push_back(part.clone());  // own storage each
  return split;
}

}  // namespace

std::vector<at::Tensor> predict(DenseNet& model, const std::vector<at::Tensor>& inputs, int64_t batch_size,
                                Precision precision) {
  if (inputs.empty()) return {};
  for (const auto& x : inputs) model->check_input(x);
  return on_compute_thread([&] { return predict_here(model, inputs, batch_size, precision); });
}

LossAndGrads loss_and_grads(DenseNet& model, const at::Tensor& x, const at::Tensor& labels) {
  model->check_input(x);
  model->zero_grad();
  at::Tensor output = model->forward(x);
  at::Tensor loss = torch::nn::functional::cross_entropy(output, labels);
  loss.backward();
  LossAndGrads r{loss.item<double>(), output.detach(), {}};
  for (const auto& p : model->named_parameters()) {
    if (p.value().grad().defined()) r.grads.emplace_back(p.key(), p.value().grad().clone());
  }
  model->zero_grad();
  return r;
}

History fit(DenseNet& model, const Dataset& train, const FitOptions& o, const Callbacks& cb) {
  TensorSource source(train, o.batch_size, o.shuffle);
  std::optional<TensorSource> validation;
  if (o.validation) validation.emplace(*o.validation, o.batch_size, /*shuffle=*/false);
  return fit(model, source, validation ? &*validation : nullptr, o, cb);
}

namespace {

// The batches since the last update (one, without accumulation): their figures and start time.
struct Group {
  int64_t batches = 0, count = 0, correct = 0;
  double loss_sum = 0;
  Clock::time_point start;
};

// The checkpoint to resume from: resume_from, or with resume_auto the checkpoint file when it
// exists (on every rank of a group: a file only some ranks see is an error, not a silent restart).
std::string resume_path(const FitOptions& o, const Parallel& par) {
  if (!o.resume_auto) return o.resume_from;
  if (o.checkpoint_path.empty()) throw std::invalid_argument("resumeFrom 'auto' needs a checkpoint path");
  const bool exists = std::filesystem::is_regular_file(o.checkpoint_path);
  if (par.on) {
    at::Tensor seen = at::full({1}, exists ? 1.0f : 0.0f, at::kFloat);
    distributed::all_reduce(seen, distributed::ReduceOp::kSum);  // the ranks that see it
    const auto ranks = static_cast<int64_t>(seen.item<float>());
    if (ranks != 0 && ranks != par.world)
      throw TrainingError("checkpoint " + o.checkpoint_path + " exists on some ranks and not on others (rank " +
                          std::to_string(par.rank) + (exists ? " sees it" : " does not") +
                          "): put it on a file system every machine shares");
  }
  return exists ? o.checkpoint_path : std::string();
}

History fit_on(DenseNet& model, BatchSource& train, BatchSource* validation, const FitOptions& o, const Callbacks& cb,
               const Parallel& par) {
  if (par.on) {
    train.shard(par.rank, par.world, o.drop_last, o.seed);
    if (validation) validation->shard(par.rank, par.world, /*drop_last=*/false, o.seed);
  }
  train.check(*model);
  if (validation) validation->check(*model);
  ModeGuard mode(model);
  const auto device = model->parameters().front().device();
  const int64_t num_classes = model->config().num_classes;
  auto optimizer = make_optimizer(model, o.optimizer);
  // Each rank draws its own augmentation, mixing and dropout (the shards already differ).
  const uint64_t seed = o.seed + static_cast<uint64_t>(par.rank) * 0x9E3779B97F4A7C15ULL;
  RunState run(at::detail::createCPUGenerator(seed), at::detail::createCPUGenerator(seed ^ 0x5DEECE66DULL));
  run.rank = par.rank;
  run.world = par.world;
  global_generator().set_current_seed(seed);  // dropout
  run.data_at_epoch_start = run.data.get_state();
  if (o.ema.decay > 0) run.ema.emplace(model, o.ema.decay);

  const std::string resume = resume_path(o, par);
  if (!resume.empty()) load_checkpoint(resume, model, *optimizer, run);
  std::vector<at::Tensor> params = model->parameters();
  std::vector<at::Tensor> buffers;
  for (const auto& b : model->buffers())
    if (b.defined()) buffers.push_back(b);
  if (par.on) {  // every rank starts from rank 0's weights and statistics, as DDP's constructor
    torch::NoGradGuard no_grad;
    std::vector<at::Tensor> state = params;
    state.insert(state.end(), buffers.begin(), buffers.end());
    distributed::broadcast_coalesced(state, 0);
  }
  if (run.ema && !run.ema_restored) run.ema->reset();  // from the weights the run starts with

  // float16 forward passes (CUDA): dynamic loss scaling keeps small gradients from flushing to zero.
  std::optional<LossScaler> scaler;
  if (o.precision == Precision::kFp16) scaler.emplace(device);

  // Rank 0 writes the group's checkpoint (with every rank's generators); the others wait for it,
  // so that a rank that resumes right after fit returns finds the file complete.
  const auto write_checkpoint = [&] {
    at::Tensor states = own_generator_states(run).unsqueeze(0);
    if (par.on) {
      at::Tensor all = at::zeros({par.world, states.size(1), states.size(2)}, at::kLong);
      all[par.rank].copy_(states[0]);
      distributed::all_reduce(all, distributed::ReduceOp::kSum);
      states = all.to(at::kByte);
    }
    if (!par.on || par.rank == 0) save_checkpoint(o.checkpoint_path, model, *optimizer, run, states);
    if (par.on) distributed::barrier();
  };
  int64_t saved_at_step = -1;

  History history;
  const int64_t batches = train.batches();
  for (int64_t epoch = run.epoch; epoch < o.epochs; ++epoch) {
    const double epoch_lr = scheduled_lr(o, epoch);
    double lr = epoch_lr;
    set_lr(*optimizer, lr);
    model->train();
    const auto epoch_start = Clock::now();
    // Resuming inside this epoch: the same order (drawn from the generator's state at the epoch's
    // start), the batches already done passed over, then the generator as it was at the checkpoint.
    const RunState::Progress resumed = std::exchange(run.progress, RunState::Progress{});
    if (resumed.batch > 0) {
      const at::Tensor now = run.data.get_state();
      run.data.set_state(run.data_at_epoch_start);
      train.start_epoch(epoch, /*train=*/true, run.data);
      train.skip(resumed.batch, run.data, cb.stop);
      run.data.set_state(now);
    } else {
      run.data_at_epoch_start = run.data.get_state();
      train.start_epoch(epoch, /*train=*/true, run.data);
    }
    train.take_wait_seconds();
    double loss_sum = resumed.loss_sum, wait_seconds = resumed.wait_seconds;
    int64_t correct = resumed.correct, seen = resumed.seen;
    Group group;
    const auto check_loss = [&](double loss_value, int64_t b) {
      if (!std::isfinite(loss_value))
        throw TrainingError("loss became " + std::string(std::isnan(loss_value) ? "NaN" : "infinite") + " at epoch " +
                            std::to_string(epoch + 1) + ", batch " + std::to_string(b + 1) + " (try a lower learning rate)");
    };
    // One optimizer step on the gradients summed over the group's batches (and, data-parallel,
    // over the ranks), then the weight average and the batch report.
    const auto update = [&](int64_t b) {
      if (par.on) {
        // Gradients summed over ranks in buckets (last layers first, as DDP's reducer), with the
        // group's loss sum, correct count and size riding in the last bucket.
        std::vector<at::Tensor> grads;
        grads.reserve(params.size() + 1);
        for (auto it = params.rbegin(); it != params.rend(); ++it) {
          if (!it->grad().defined()) it->mutable_grad() = at::zeros_like(*it);
          grads.push_back(it->grad());
        }
        at::Tensor metrics = at::tensor({static_cast<float>(group.loss_sum), static_cast<float>(group.correct),
                                         static_cast<float>(group.count)}, at::kFloat);
        if (metrics.device() != device) metrics = metrics.to(device);
        grads.push_back(metrics);
        distributed::all_reduce_coalesced(grads, kBucketBytes);
        grads.pop_back();
        metrics = metrics.cpu();
        group.loss_sum = metrics[0].item<double>();
        group.correct = static_cast<int64_t>(metrics[1].item<float>());
        group.count = static_cast<int64_t>(metrics[2].item<float>());
        check_loss(group.loss_sum / static_cast<double>(group.count), b);  // the group's loss: every rank stops together
      }
      // The mean over ranks and accumulated batches, as one batch of all their images would give.
      const double share = static_cast<double>(par.world * group.batches);
      if (share > 1) {
        torch::NoGradGuard no_grad;
        for (auto& p : params)
          if (p.grad().defined()) p.mutable_grad().div_(share);
      }
      // With loss scaling, a step whose (summed) gradients overflowed is skipped on every rank.
      if (!scaler || scaler->unscale(params)) {
        // Clipped after the (averaged, unscaled) gradients are final, as clip_grad_norm_ before step().
        if (o.clip_grad_norm > 0) torch::nn::utils::clip_grad_norm_(params, o.clip_grad_norm);
        optimizer->step();
        ++run.steps;
        // torchvision's recipe restarts the average during the warm-up: it follows the weights there.
        if (run.ema && run.steps % o.ema.every_steps == 0) run.ema->update(static_cast<double>(epoch) < o.schedule.warmup_epochs);
      }
      if (scaler) scaler->update();
      loss_sum += group.loss_sum;
      correct += group.correct;
      seen += group.count;
      if (cb.on_batch) {
        const double count = static_cast<double>(group.count);
        cb.on_batch({epoch + 1, b + 1, batches, group.loss_sum / count, static_cast<double>(group.correct) / count, lr,
                     count / seconds_since(group.start)});
      }
      group = Group{};
      // A checkpoint inside the epoch (the one at its end follows the epoch's last batch).
      if (o.checkpoint_steps > 0 && !o.checkpoint_path.empty() && run.steps % o.checkpoint_steps == 0 &&
          run.steps != saved_at_step && (batches == 0 || b + 1 < batches)) {
        run.progress = {b + 1, correct, seen, loss_sum, wait_seconds + train.take_wait_seconds()};
        wait_seconds = run.progress.wait_seconds;
        write_checkpoint();
        run.progress = {};
        saved_at_step = run.steps;
      }
    };
    int64_t b = resumed.batch;
    for (;; ++b) {
      if (!par.on && cb.stop && cb.stop->load()) {
        history.stopped = true;
        return history;
      }
      serve_waiting_tasks();  // predictions and evaluations asked for during the last step, before timing this one
      if (group.batches == 0) {
        group.start = Clock::now();
        optimizer->zero_grad();
      }
      auto batch = train.next(run.data, cb.stop);
      wait_seconds += train.take_wait_seconds();
      if (par.on) {
        // Every rank takes the same path: all stop when one was asked to, the epoch ends when
        // one rank's data ran out (streamed shards may differ in length), else all step.
        const bool stop = cb.stop && cb.stop->load();
        at::Tensor state = at::full({1}, stop ? 0.0 : batch ? 2.0 : 1.0, at::kFloat);
        distributed::all_reduce(state, distributed::ReduceOp::kMin);
        const double all = state.item<double>();
        if (all == 0) {
          history.stopped = true;
          return history;
        }
        if (all == 1) break;
        torch::NoGradGuard no_grad;  // rank 0's running statistics, as DDP's broadcast_buffers
        distributed::broadcast_coalesced(buffers, 0);
      } else if (!batch) {
        if (cb.stop && cb.stop->load()) continue;  // stopped while waiting for data
        break;
      }
      auto [x, y] = std::move(*batch);
      x = to_device(x, device);
      y = to_device(y, device);
      if (o.schedule.warmup_epochs > 0) {
        // Per step while warming up (streamed data of unknown length: per epoch).
        lr = epoch_lr * warmup_factor(o.schedule, batches > 0 ? epoch * batches + b : epoch, batches);
        set_lr(*optimizer, lr);
      }
      at::Tensor target = y;
      if (o.mix.any()) target = mix_batch(x, y, num_classes, o.mix, run.mix).first;
      at::Tensor out;
      {
        PrecisionScope scope(o.precision, device);  // forward only; backward follows the recorded dtypes
        out = model->forward(x);
      }
      at::Tensor loss = torch::nn::functional::cross_entropy(
          out.to(at::kFloat), target, torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(o.label_smoothing));
      // Accuracy against each image's own label (with mixing, the label of its larger share for MixUp's lambda > 0.5).
      const at::Tensor correct_count = out.detach().argmax(1).eq(y).sum();
      (scaler ? scaler->scale(loss) : loss).backward();
      // The host reads the loss and the correct count once, after backward was queued: on a GPU
      // the forward and backward kernels then run back to back (a read before backward left the
      // device idle while the host queued the backward pass). A non-finite loss still stops the
      // run before the update.
      const at::Tensor host = at::stack({loss.detach().to(at::kDouble), correct_count.to(at::kDouble)}).cpu();
      const double loss_value = host[0].item<double>();
      if (!par.on) check_loss(loss_value, b);
      ++group.batches;
      group.count += x.size(0);
      group.loss_sum += loss_value * static_cast<double>(x.size(0));
      group.correct += static_cast<int64_t>(host[1].item<double>());
      if (group.batches == o.accumulate_steps) update(b);
    }
    if (group.batches > 0) update(b - 1);  // the epoch's last, shorter group
    if (seen == 0) throw DataError("the training data delivered no batch in epoch " + std::to_string(epoch + 1));
    if (par.on) {  // every rank leaves the epoch with rank 0's statistics: one model for validation, checkpoints and the caller
      torch::NoGradGuard no_grad;
      distributed::broadcast_coalesced(buffers, 0);
      // The average's statistics followed each rank's own batches since the last broadcast: rank 0's too.
      if (run.ema) distributed::broadcast_coalesced(run.ema->tensors(), 0);
    }
    EpochReport report{epoch + 1, loss_sum / static_cast<double>(seen), static_cast<double>(correct) / static_cast<double>(seen),
                       std::nullopt, std::nullopt, std::nullopt, std::nullopt, lr, 0, 0};
    report.seconds = seconds_since(epoch_start);
    report.images_per_second = static_cast<double>(seen) / report.seconds;
    report.data_wait_share = wait_seconds / report.seconds;
    if (validation) {
      const Evaluation v = evaluate(model, *validation, o.precision, cb.stop);
      report.val_loss = v.loss;
      report.val_accuracy = v.accuracy;
      if (run.ema) {  // the average in the model for its evaluation, then the raw weights back
        run.ema->swap();
        struct SwapBack {
          WeightAverage& ema;
          ~SwapBack() { ema.swap(); }
        } back{*run.ema};
        const Evaluation e = evaluate(model, *validation, o.precision, cb.stop);
        report.ema_val_loss = e.loss;
        report.ema_val_accuracy = e.accuracy;
      }
    }
    run.epoch = epoch + 1;
    const bool checkpoint = !o.checkpoint_path.empty() && ((epoch + 1) % o.checkpoint_every == 0 || epoch + 1 == o.epochs);
    if (checkpoint) write_checkpoint();
    history.epochs.push_back(report);
    if (cb.on_epoch) cb.on_epoch(report);
  }
  if (run.ema && o.ema.final_weights) run.ema->copy_to_model();
  return history;
}

}  // namespace

History fit(DenseNet& model, BatchSource& train, BatchSource* validation, const FitOptions& o, const Callbacks& cb) {
  return long_on_compute_thread([&] {
    const Parallel par = parallel();
    struct Release {
      ~Release() { release_free_memory(); }  // the run's activations, kept in the heap for reuse until now
    } release;
    const HeapReuseScope reuse;  // declared after release: ends first
    return tell_others_on_error(par, [&] { return fit_on(model, train, validation, o, cb, par); });
  });
}

}  // namespace densetorch
