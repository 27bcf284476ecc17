#include "data.h"

#include "compute_thread.h"
#include "distributed.h"
#include "errors.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace densetorch {

void validate(const Dataset& d, int64_t num_classes) {
  if (!d.images.defined() || d.images.dim() != 4)
    throw std::invalid_argument("images must have shape [N, C, H, W]");
  if (d.images.scalar_type() != at::kByte && d.images.scalar_type() != at::kFloat)
    throw std::invalid_argument("images must be uint8 or float32");
  if (!d.labels.defined() || d.labels.dim() != 1) throw std::invalid_argument("labels must have shape [N]");
  if (d.labels.size(0) != d.images.size(0))
    throw std::invalid_argument("labels has " + std::to_string(d.labels.size(0)) + " entries but images has " +
                                std::to_string(d.images.size(0)));
  if (d.size() == 0) throw std::out_of_range("the data set is empty");
  const int64_t lo = d.labels.min().item<int64_t>(), hi = d.labels.max().item<int64_t>();
  if (lo < 0 || hi >= num_classes)
    throw std::out_of_range("labels must be in [0, " + std::to_string(num_classes - 1) + "] for a model with " +
                            std::to_string(num_classes) + " classes, got labels from " + std::to_string(lo) + " to " +
                            std::to_string(hi));
  if ((d.augment == Augment::kTrivialAugment || d.augment == Augment::kRandAugment) &&
      (d.images.scalar_type() != at::kByte || (d.images.size(1) != 1 && d.images.size(1) != 3)))
    throw std::invalid_argument("augment 'trivialaugment' and 'randaugment' need uint8 images with 1 or 3 channels");
  if (d.random_erasing < 0 || d.random_erasing > 1) throw std::out_of_range("randomErasing must be a probability in [0, 1]");
  for (const auto* stats : {&d.mean, &d.std})
    if (stats->has_value() && static_cast<int64_t>((*stats)->size()) != d.images.size(1))
      throw std::invalid_argument("normalize mean and std need one value per channel (" + std::to_string(d.images.size(1)) + ")");
}

void validate(const Dataset& data, const DenseNetImpl& model) {
  validate(data, model.config().num_classes);
  model.check_image_sizes(data.images.sizes(), "images");
}

at::Tensor epoch_order(int64_t n, bool shuffle, at::Generator& gen) {
  if (!shuffle) return at::arange(n, at::kLong);
  return at::randperm(n, gen, at::TensorOptions().dtype(at::kLong));
}

namespace {

at::Tensor crop_and_flip(const at::Tensor& x, at::Generator& gen) {
  constexpr int64_t kPad = 4;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3);
  at::Tensor padded = at::constant_pad_nd(x, {kPad, kPad, kPad, kPad}, 0);
  at::Tensor offsets = at::randint(0, 2 * kPad + 1, {n, 2}, gen, at::TensorOptions().dtype(at::kLong));
  at::Tensor flips = at::randint(0, 2, {n}, gen, at::TensorOptions().dtype(at::kLong));
  auto off = offsets.accessor<int64_t, 2>();
  auto flip = flips.accessor<int64_t, 1>();
  at::Tensor out = at::empty_like(x);
  for (int64_t i = 0; i < n; ++i) {
    at::Tensor crop = padded[i].narrow(1, off[i][0], h).narrow(2, off[i][1], w);
    out[i].copy_(flip[i] ? crop.flip({2}) : crop);
  }
  return out;
}

}  // namespace

std::pair<at::Tensor, at::Tensor> make_batch(const Dataset& d, const at::Tensor& indices, bool train, at::Generator& gen) {
  at::Tensor x = d.images.index_select(0, indices);
  const AugmentPolicy policy = !train                                  ? AugmentPolicy::kNone
                               : d.augment == Augment::kTrivialAugment ? AugmentPolicy::kTrivialAugmentWide
                               : d.augment == Augment::kRandAugment    ? AugmentPolicy::kRandAugment
                                                                       : AugmentPolicy::kNone;
  if (policy != AugmentPolicy::kNone) {
    x = crop_and_flip(x, gen);
    for (int64_t i = 0; i < x.size(0); ++i) x[i].copy_(apply_policy(x[i], policy, gen));
  }
  x = x.to(at::kFloat);
  if (d.images.scalar_type() == at::kByte) x.div_(255.0);
  if (d.mean && d.std) {
    const auto c = static_cast<int64_t>(d.mean->size());
    at::Tensor mean = at::tensor(*d.mean, at::kDouble).to(at::kFloat).view({1, c, 1, 1});
    at::Tensor std = at::tensor(*d.std, at::kDouble).to(at::kFloat).view({1, c, 1, 1});
    x.sub_(mean).div_(std);
  }
  if (train && d.augment == Augment::kCifar) x = crop_and_flip(x, gen);
  if (train && d.random_erasing > 0) {
    for (int64_t i = 0; i < x.size(0); ++i) {
      at::Tensor image = x[i];
      random_erasing(image, d.random_erasing, gen);
    }
  }
  return {x, d.labels.index_select(0, indices)};
}

TensorSource::TensorSource(Dataset data, int64_t batch_size, bool shuffle)
    : data_(std::move(data)), batch_size_(batch_size), shuffle_(shuffle) {}

int64_t TensorSource::size() const {
  if (!shard_) return data_.size();
  // Training shards are padded to equal sizes (or cut, with drop_last) as DistributedSampler's;
  // this counts the training shard (evaluation shards differ by at most one sample).
  const int64_t n = data_.size(), w = shard_->world;
  return shard_->drop_last ? n / w : (n + w - 1) / w;
}

void TensorSource::shard(int64_t rank, int64_t world, bool drop_last, uint64_t seed) {
  shard_ = Shard{rank, world, drop_last, seed};
}

void TensorSource::start_epoch(int64_t epoch, bool train, at::Generator& gen) {
  train_ = train;
  if (shard_) {
    order_ = distributed::shard_indices(data_.size(), shard_->rank, shard_->world, train && shuffle_, shard_->seed, epoch,
                                        shard_->drop_last, /*pad=*/train);
  } else {
    order_ = train ? epoch_order(data_.size(), shuffle_, gen) : at::arange(data_.size(), at::kLong);
  }
  position_ = 0;
}

std::optional<Batch> TensorSource::next(at::Generator& gen, const std::atomic<bool>*) {
  const int64_t n = order_.size(0);
  if (position_ >= n) return std::nullopt;
  const int64_t count = std::min(batch_size_, n - position_);
  auto batch = make_batch(data_, order_.narrow(0, position_, count), train_, gen);
  position_ += count;
  return batch;
}

void TensorSource::skip(int64_t batches, at::Generator&, const std::atomic<bool>*) {
  position_ = std::min(order_.size(0), position_ + batches * batch_size_);
}

void TensorSource::check(const DenseNetImpl& model) { validate(data_, model); }

QueueSource::QueueSource(int64_t size, int64_t batches, int64_t capacity)
    : size_(size), batches_(batches), capacity_(capacity) {
  if (size < 0 || batches < 0 || capacity < 1)
    throw std::out_of_range("a streamed data set needs sizes >= 0 and at least one queue slot");
}

void QueueSource::start_epoch(int64_t epoch, bool train, at::Generator&) {
  int64_t generation = 0;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    generation = ++generation_;
    epoch_ = epoch;
    train_ = train;
    ended_ = false;
    error_.reset();
    queue_.clear();
  }
  if (on_request_) on_request_({generation, epoch, train, true});
}

std::optional<Batch> QueueSource::next(at::Generator&, const std::atomic<bool>* stop) {
  std::optional<Batch> batch;
  int64_t generation = 0, epoch = 0;
  bool train = false;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    const auto started = std::chrono::steady_clock::now();
    // Wakes up now and then to see the stop flag (a cancelled fit must not wait for a slow loader) and
    // to run the predictions queued on the compute thread meanwhile: fit waits here on that
    // thread, and a loader may be waiting for a prediction itself (soft targets from a teacher).
    while (queue_.empty() && !ended_ && !error_ && !(stop && stop->load())) {
      ready_.wait_for(lock, std::chrono::milliseconds(5));
      lock.unlock();
      serve_waiting_tasks();
      lock.lock();
    }
    wait_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (!queue_.empty()) {
      batch = std::move(queue_.front());
      queue_.pop_front();
    } else if (error_) {
      throw DataError(*error_);
    } else {
      return std::nullopt;  // the epoch ended, or stop was set
    }
    generation = generation_;
    epoch = epoch_;
    train = train_;
  }
  const auto& [images, labels] = *batch;
  if (num_classes_ > 0) {
    if (images.dim() != 4 || images.size(1) != channels_)
      throw DataError("a streamed batch has images of shape " + c10::str(images.sizes()) + ", expected [B, " +
                      std::to_string(channels_) + ", H, W]");
    const int64_t lo = labels.min().item<int64_t>(), hi = labels.max().item<int64_t>();
    if (lo < 0 || hi >= num_classes_)
      throw DataError("labels must be in [0, " + std::to_string(num_classes_ - 1) + "] for a model with " +
                      std::to_string(num_classes_) + " classes, got a batch with labels from " + std::to_string(lo) +
                      " to " + std::to_string(hi));
  }
  if (on_request_) on_request_({generation, epoch, train, false});
  return batch;
}

double QueueSource::take_wait_seconds() {
  std::lock_guard<std::mutex> lock(mutex_);
  const double s = wait_seconds_;
  wait_seconds_ = 0;
  return s;
}

void QueueSource::check(const DenseNetImpl& model) {
  std::lock_guard<std::mutex> lock(mutex_);
  num_classes_ = model.config().num_classes;
  channels_ = model.config().in_channels;
}

bool QueueSource::push(int64_t generation, Batch batch) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (generation != generation_ || ended_) return false;
    queue_.push_back(std::move(batch));
  }
  ready_.notify_all();
  return true;
}

void QueueSource::end(int64_t generation) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (generation != generation_) return;
    ended_ = true;
  }
  ready_.notify_all();
}

void QueueSource::fail(int64_t generation, const std::string& message) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (generation != generation_) return;
    error_ = message;
  }
  ready_.notify_all();
}

}  // namespace densetorch
