// The training loop: optimizers, learning-rate schedules, validation, checkpoints and resume,
// progress callbacks and cooperative stopping. Runs on whatever thread calls it.
#pragma once

#include "data.h"
#include "densenet.h"
#include "precision.h"
#include "recipes.h"

#include <atomic>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace densetorch {

struct OptimizerOptions {
  enum class Type { kSgd, kAdam, kAdamW } type = Type::kSgd;
  double lr = 0.1;
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 1e-4;
  double beta1 = 0.9, beta2 = 0.999;
};

struct ScheduleOptions {
  enum class Type { kConstant, kMultiStep, kCosine } type = Type::kConstant;
  std::vector<double> milestones = {0.5, 0.75};  // fractions of the run
  double gamma = 0.1;
  // Linear warm-up over the first warmup_epochs epochs, per step (torchvision's LinearLR): the
  // rate is multiplied by warmup_start_factor at the first step, rising to 1. 0: none.
  double warmup_epochs = 0;
  double warmup_start_factor = 0.1;
};

struct FitOptions {
  int64_t epochs = 1;
  int64_t batch_size = 64;
  OptimizerOptions optimizer;
  ScheduleOptions schedule;
  bool shuffle = true;
  uint64_t seed = 0;
  bool drop_last = false;  // data-parallel: cut each epoch to a multiple of the world size instead of padding it
  std::optional<Dataset> validation;
  std::string checkpoint_path;  // empty: no checkpoints
  int64_t checkpoint_every = 1;
  // > 0: also a checkpoint every this many optimizer steps inside an epoch; resuming from it
  // continues at the next batch of that epoch (same order, same generator states).
  int64_t checkpoint_steps = 0;
  std::string resume_from;  // empty: start from scratch
  // Resume from checkpoint_path when the file exists, else start from scratch (torchrun's
  // restarts: every restarted worker runs the same script). Data-parallel: every rank must see it.
  bool resume_auto = false;
  Precision precision = Precision::kFp32;  // of the forward pass (autocast); the update stays float32
  double label_smoothing = 0;  // cross-entropy against (1 - e) * onehot + e / K
  double clip_grad_norm = 0;   // > 0: total-norm clipping of the gradients before each update
  MixOptions mix;              // MixUp / CutMix of every training batch (recipes.h)
  // Gradients of this many batches are summed (each batch's loss a mean over its images, the sum
  // then divided by the count) before one update; batch norm sees each batch on its own.
  int64_t accumulate_steps = 1;
  struct Ema {
    double decay = 0;         // > 0: keep an exponential moving average of the weights (recipes.h)
    int64_t every_steps = 1;  // updates of the average, in optimizer steps
    bool final_weights = true;  // fit leaves the average in the model when it completes
  } ema;
};

// The warm-up factor of step `step` (0-based, counted over the run) with `batches` steps per
// epoch (0 when unknown: the warm-up then goes by whole epochs).
double warmup_factor(const ScheduleOptions& s, int64_t step, int64_t batches);

struct BatchReport {
  int64_t epoch, batch, batches;  // 1-based epoch and batch
  double loss, accuracy, lr, images_per_second;
};

struct EpochReport {
  int64_t epoch;
  double loss, accuracy;
  std::optional<double> val_loss, val_accuracy;
  std::optional<double> ema_val_loss, ema_val_accuracy;  // the weight average's, with fit's ema
  double lr, seconds, images_per_second;
  double data_wait_share = 0;  // fraction of the epoch's training time spent waiting for batches
};

struct History {
  std::vector<EpochReport> epochs;
  bool stopped = false;  // the stop flag ended the run early
};

struct Callbacks {
  std::function<void(const BatchReport&)> on_batch;  // may be empty
  std::function<void(const EpochReport&)> on_epoch;  // may be empty
  const std::atomic<bool>* stop = nullptr;           // checked before every batch
};

// Learning rate of `epoch` (0-based) of `epochs` under the schedule.
double scheduled_lr(const FitOptions& options, int64_t epoch);


History fit(DenseNet& model, const Dataset& train, const FitOptions& options, const Callbacks& callbacks);

// fit on batches from `train` (and, after each epoch, evaluation on `validation` when given);
// options.validation, batch_size and shuffle are the sources' business here.
//
// When a distributed group is initialized (distributed.h), fit is data-parallel as a model in
// PyTorch's DistributedDataParallel: parameters and buffers broadcast from rank 0 first, buffers
// again before every step; each rank trains on its DistributedSampler shard (batch_size is per
// rank); gradients are averaged across ranks in 25 MB buckets after backward; the reported loss
// and accuracy are the whole group's; only rank 0 writes checkpoints. A failure on one rank is
// reported to the others (distributed::report_failure), whose fit then throws DistributedError.
//
// Runs on the compute thread (compute_thread.h) as a long task: the predictions and evaluation
// batches other threads ask for meanwhile run between its steps, and another fit waits for it.
History fit(DenseNet& model, BatchSource& train, BatchSource* validation, const FitOptions& options,
            const Callbacks& callbacks);

struct Evaluation {
  double loss, accuracy;
  int64_t count;
};

// Mean cross-entropy and accuracy in eval mode without autograd; restores the model's mode.
// Checks the data against the model first (validate above). With a distributed group, each rank
// evaluates its share (every sample once across ranks) and the figures are the group's.
Evaluation evaluate(DenseNet& model, const Dataset& data, int64_t batch_size, Precision precision = Precision::kFp32);
Evaluation evaluate(DenseNet& model, BatchSource& data, Precision precision = Precision::kFp32,
                    const std::atomic<bool>* stop = nullptr);

// Logits of each input ([N_i, C, H, W], each checked with check_input), computed as one batch:
// the inputs are concatenated, run in eval mode without autograd in slices of `batch_size`
// images, and split back (float32). Restores the model's mode. Runs on the compute thread
// (compute_thread.h), as evaluate's batches do outside a training run.
std::vector<at::Tensor> predict(DenseNet& model, const std::vector<at::Tensor>& inputs, int64_t batch_size,
                                Precision precision = Precision::kFp32);

struct LossAndGrads {
  double loss;
  at::Tensor output;                                    // logits, detached
  std::vector<std::pair<std::string, at::Tensor>> grads;  // by parameter name (copies)
};

// One forward/backward pass with cross-entropy in the model's current mode; leaves no gradients
// on the model. For tests and benchmarks.
LossAndGrads loss_and_grads(DenseNet& model, const at::Tensor& x, const at::Tensor& labels);

}  // namespace densetorch
