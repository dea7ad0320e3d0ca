#pragma once
// What generation needs from a left-to-right language model: full-sequence logits, incremental
// logits with a per-layer cache, and a cache factory. The decoder LM implements it; DMC/DMS
// variants do too, by handing out their own KVCache implementations from make_cache.
#include "models/kv_cache.h"
#include "models/module.h"

namespace strata::models {

class CausalLM : public Module {
 public:
  using Module::Module;
  // ids [B, L] (i32/i64) -> logits [B, L, vocab] for positions 0..L-1.
  virtual Tensor forward(const Tensor& ids) const = 0;
  // ids [B, t]: the t tokens after the cache's positions; appends them to the cache and returns
  // their logits [B, t, vocab]. Inference only (no autograd history through the cache).
  virtual Tensor forward_step(const Tensor& ids, ModelCache& cache) const = 0;
  // An empty cache for `batch` sequences of up to `capacity` positions.
  virtual ModelCache make_cache(int64_t batch, int64_t capacity) const = 0;
  virtual int64_t vocab_size() const = 0;
  virtual int64_t max_seq_len() const = 0;
};

}  // namespace strata::models
