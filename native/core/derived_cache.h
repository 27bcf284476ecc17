// Values derived from tensors (a batch norm's affine form, a convolution weight with a batch norm
// folded in, a weight packed for a kernel), kept while those tensors live unchanged, so that
// evaluation computes them once instead of on every forward pass. An entry is used only for the
// same live tensors (weak references, not addresses alone, which a new tensor may reuse) at the
// same versions (every in-place change, an optimizer step or a statistics update, bumps a
// tensor's version) and the same extra key (eps, a shape). Callers use it without gradients only:
// with them autograd must see the operations. Entries whose tensors are gone are dropped at the
// next miss and by prune_derived_caches(), which the addon calls when a model is released, so a
// released model's derived values do not outlive it. Caches live as long as the process.
#pragma once

#include <ATen/ATen.h>

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace densetorch {

namespace detail {
// Every DerivedCache's pruning, in creation order (caches are never destroyed).
inline std::mutex& cache_registry_mutex() {
  static auto* m = new std::mutex();
  return *m;
}
inline std::vector<std::function<void()>>& cache_registry() {
  static auto* r = new std::vector<std::function<void()>>();
  return *r;
}
}  // namespace detail

// Drops every cache's entries whose tensors are gone (a model was released).
inline void prune_derived_caches() {
  std::vector<std::function<void()>> all;
  {
    std::lock_guard<std::mutex> lock(detail::cache_registry_mutex());
    all = detail::cache_registry();
  }
  for (const auto& prune : all) prune();
}

template <typename Value, std::size_t N>
class DerivedCache {
 public:
  DerivedCache() {
    std::lock_guard<std::mutex> lock(detail::cache_registry_mutex());
    detail::cache_registry().push_back([this] { prune(); });
  }
  DerivedCache(const DerivedCache&) = delete;
  DerivedCache& operator=(const DerivedCache&) = delete;

  void prune() {
    std::lock_guard<std::mutex> lock(mutex_);
    drop_dead();
  }

  // The value for `inputs` and `extra`, from `make()` when no live entry matches.
  template <typename Make>
  Value get(const std::array<const at::Tensor*, N>& inputs, double extra, Make&& make) {
    const c10::TensorImpl* key = inputs[0]->unsafeGetTensorImpl();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = entries_.find(key);
      if (it != entries_.end() && matches(it->second, inputs, extra)) return it->second.value;
    }
    Value value = make();
    Entry entry{{}, {}, extra, value};
    for (std::size_t i = 0; i < N; ++i) {
      entry.tensors.emplace_back(inputs[i]->getIntrusivePtr());
      entry.versions[i] = inputs[i]->_version();
    }
    std::lock_guard<std::mutex> lock(mutex_);
    drop_dead();
    entries_.insert_or_assign(key, std::move(entry));
    return value;
  }

 private:
  void drop_dead() {
    for (auto it = entries_.begin(); it != entries_.end();) it = alive(it->second) ? std::next(it) : entries_.erase(it);
  }
  struct Entry {
    std::vector<c10::weak_intrusive_ptr<c10::TensorImpl>> tensors;
    std::array<uint32_t, N> versions;
    double extra;
    Value value;
  };
  static bool alive(const Entry& e) {
    for (const auto& t : e.tensors)
      if (t.expired()) return false;
    return true;
  }
  static bool matches(const Entry& e, const std::array<const at::Tensor*, N>& inputs, double extra) {
    if (e.extra != extra) return false;
    for (std::size_t i = 0; i < N; ++i) {
      if (e.tensors[i].lock().get() != inputs[i]->unsafeGetTensorImpl() || e.versions[i] != inputs[i]->_version())
        return false;
    }
    return true;
  }
  std::mutex mutex_;
  std::unordered_map<const c10::TensorImpl*, Entry> entries_;
};

}  // namespace densetorch
