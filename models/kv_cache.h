#pragma once
// Key/value caches for incremental decoding. Attention talks to a cache only through the KVCache
// interface below, so a compressing cache (DMC merges slots, DMS evicts them) replaces DenseKVCache
// without touching the attention block:
//   - append() receives the new tokens' keys and values after RoPE, one call per forward_step;
//   - keys()/values() are what attention reads now; their slot count may be smaller than the
//     number of positions seen, and may differ between heads if a bias() masks the unused slots;
//   - positions() counts tokens seen (the RoPE offset of the next token), slots() the cache length.
// Caches are for inference: they keep no autograd history.
#include <cstdint>
#include <memory>
#include <vector>

#include "core/tensor.h"

namespace strata::models {

class KVCache {
 public:
  virtual ~KVCache() = default;
  // k, v: [B, H_kv, t, D] for the t new positions.
  virtual void append(const Tensor& k, const Tensor& v) = 0;
  // [B, H_kv, slots(), D] after the last append.
  virtual Tensor keys() const = 0;
  virtual Tensor values() const = 0;
  // Additive attention bias for the t newest queries, broadcastable to [B, H_kv, t, slots()], or
  // undefined. A dense cache needs none (the causal rule of the fused kernel suffices).
  virtual Tensor bias(int64_t /*t*/) const { return {}; }
  // Whether attention should apply the causal rule (queries are the last t positions).
  virtual bool causal() const { return true; }
  virtual int64_t positions() const = 0;
  virtual int64_t slots() const = 0;
  virtual void reset() = 0;
};

// Every position kept: a preallocated [B, H_kv, capacity, D] buffer filled left to right.
class DenseKVCache : public KVCache {
 public:
  DenseKVCache(int64_t batch, int64_t kv_heads, int64_t head_dim, int64_t capacity,
               DType dtype = DType::f32);
  void append(const Tensor& k, const Tensor& v) override;
  Tensor keys() const override;
  Tensor values() const override;
  int64_t positions() const override { return length_; }
  int64_t slots() const override { return length_; }
  void reset() override { length_ = 0; }
  int64_t capacity() const { return capacity_; }

 private:
  int64_t batch_, heads_, head_dim_, capacity_;
  int64_t length_ = 0;
  Tensor k_, v_;
};

// One cache per layer of a model.
struct ModelCache {
  std::vector<std::unique_ptr<KVCache>> layers;
  int64_t positions() const { return layers.empty() ? 0 : layers.front()->positions(); }
  void reset() {
    for (auto& l : layers) l->reset();
  }
};

}  // namespace strata::models
