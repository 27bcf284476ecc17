// In-memory image data sets: batching, shuffling, normalisation and the paper's CIFAR
// augmentation, all in C++ on the training thread (no per-batch copies through JS).
#pragma once

#include "augment.h"
#include "densenet.h"

#include <torch/torch.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace densetorch {

// kCifar: random crop with 4-pixel zero padding (after normalisation) + horizontal flip.
// kTrivialAugment / kRandAugment: the same crop (black padding) and flip on the 8-bit pixels, then
// the policy (augment.h), before scaling and normalisation, as torchvision's recipes order them.
enum class Augment { kNone, kCifar, kTrivialAugment, kRandAugment };

struct Dataset {
  at::Tensor images;  // [N, C, H, W], uint8 (scaled by 1/255) or float32, CPU
  at::Tensor labels;  // [N], int64, CPU
  std::optional<std::vector<double>> mean, std;  // per-channel normalisation, after scaling
  Augment augment = Augment::kNone;
  double random_erasing = 0;  // probability of RandomErasing per training image, after normalisation

  int64_t size() const { return images.size(0); }
};

// Checks shapes, dtypes and label range; throws std::invalid_argument / std::out_of_range.
void validate(const Dataset& data, int64_t num_classes);
// validate(data, num_classes) plus: the images fit the model (channels, at least its smallest size).
void validate(const Dataset& data, const DenseNetImpl& model);

// The order of one epoch: a permutation from `gen` when shuffling, else 0..N-1.
at::Tensor epoch_order(int64_t n, bool shuffle, at::Generator& gen);

// Float32 images and int64 labels of the samples at `indices`, normalised and (if `train` and
// the data set asks for it) augmented with `gen` (see Augment; then random erasing).
std::pair<at::Tensor, at::Tensor> make_batch(const Dataset& data, const at::Tensor& indices, bool train,
                                             at::Generator& gen);

// One batch: float32 images [B, C, H, W] and int64 labels [B], on the CPU.
using Batch = std::pair<at::Tensor, at::Tensor>;

// Where fit and evaluate take their batches from, one epoch at a time: an in-memory data set
// (TensorSource) or batches made elsewhere, e.g. decoded from image files (QueueSource).
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  // Samples per epoch.
  virtual int64_t size() const = 0;
  // Batches per epoch.
  virtual int64_t batches() const = 0;
  // Starts epoch `epoch` (0-based); `train` asks for training order and augmentation.
  virtual void start_epoch(int64_t epoch, bool train, at::Generator& gen) = 0;
  // The next batch of the epoch, or nullopt after its last one (or when `stop` is set).
  virtual std::optional<Batch> next(at::Generator& gen, const std::atomic<bool>* stop) = 0;
  // Passes over the first `batches` batches of the epoch just started (resuming inside an epoch):
  // by default they are taken and dropped, so that the source's own position follows.
  virtual void skip(int64_t batches, at::Generator& gen, const std::atomic<bool>* stop) {
    for (int64_t i = 0; i < batches; ++i)
      if (!next(gen, stop)) break;
  }
  // Seconds next() spent waiting for data since the last call (then reset).
  virtual double take_wait_seconds() { return 0; }
  // Checks the labels and image channels it delivers against a model: up front for data in
  // memory (throws as validate()), batch by batch (DataError) for data that arrives later.
  virtual void check(const DenseNetImpl& model) = 0;
  // Data-parallel training: from now on deliver only rank `rank`'s share of each epoch, as
  // DistributedSampler (distributed::shard_indices; `seed` seeds the shuffle with seed + epoch).
  // Sources fed from outside (QueueSource) are sharded by their producer and ignore this.
  virtual void shard(int64_t rank, int64_t world, bool drop_last, uint64_t seed) {}
};

// Batches of an in-memory data set: a permutation per epoch when shuffling, normalisation and
// augmentation as make_batch.
class TensorSource : public BatchSource {
 public:
  TensorSource(Dataset data, int64_t batch_size, bool shuffle);
  int64_t size() const override;
  int64_t batches() const override { return (size() + batch_size_ - 1) / batch_size_; }
  void start_epoch(int64_t epoch, bool train, at::Generator& gen) override;
  std::optional<Batch> next(at::Generator& gen, const std::atomic<bool>* stop) override;
  void skip(int64_t batches, at::Generator& gen, const std::atomic<bool>* stop) override;
  void check(const DenseNetImpl& model) override;
  void shard(int64_t rank, int64_t world, bool drop_last, uint64_t seed) override;
  const Dataset& data() const { return data_; }

 private:
  struct Shard {
    int64_t rank, world;
    bool drop_last;
    uint64_t seed;
  };
  Dataset data_;
  int64_t batch_size_;
  bool shuffle_;
  std::optional<Shard> shard_;
  bool train_ = false;
  at::Tensor order_;
  int64_t position_ = 0;
};

// A bounded queue of batches filled from another thread (the JS data loader): the consumer
// (fit, on the compute thread) asks for an epoch through the request handler, then pops its
// batches as they arrive. Each request carries a new generation number that the producer tags its pushes with;
// batches of an older generation are dropped (a producer that was too late).
class QueueSource : public BatchSource {
 public:
  struct Request {
    int64_t generation;
    int64_t epoch;
    bool train;
    bool start;  // true: start this epoch; false: one batch was taken, room for another
  };
  // `size` and `batches` per epoch may be 0 (not known in advance).
  QueueSource(int64_t size, int64_t batches, int64_t capacity);
  int64_t size() const override { return size_; }
  int64_t batches() const override { return batches_; }
  void start_epoch(int64_t epoch, bool train, at::Generator& gen) override;
  std::optional<Batch> next(at::Generator& gen, const std::atomic<bool>* stop) override;
  double take_wait_seconds() override;
  void check(const DenseNetImpl& model) override;

  // How the consumer tells the producer what it needs (set before use; called on the consumer's thread).
  void set_request_handler(std::function<void(const Request&)> handler) { on_request_ = std::move(handler); }
  // Producer side; any thread. Returns false when the batch was dropped (stale generation).
  bool push(int64_t generation, Batch batch);
  void end(int64_t generation);                             // the epoch has no more batches
  void fail(int64_t generation, const std::string& message);  // next() throws DataError(message)
  int64_t capacity() const { return capacity_; }

 private:
  const int64_t size_, batches_, capacity_;
  std::function<void(const Request&)> on_request_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<Batch> queue_;
  int64_t generation_ = 0;
  int64_t epoch_ = 0;
  bool train_ = false;
  bool ended_ = false;
  std::optional<std::string> error_;
  double wait_seconds_ = 0;
  int64_t num_classes_ = 0, channels_ = 0;
};

}  // namespace densetorch
