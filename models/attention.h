#pragma once
// Multi-head attention with optional grouped-query heads, RoPE, causal masking, cross-attention
// and a KV cache, on top of core's fused `attention` op.
//
// The forward pass is split into project() (q/k/v projections and RoPE) and attend() (cache,
// head expansion, fused attention, output projection), both virtual, so DMC/DMS retrofits can
// override one stage (e.g. read the repurposed last channel before RoPE) and keep the other.
#include <optional>

#include "core/ops/nn.h"
#include "models/kv_cache.h"
#include "models/linear.h"
#include "parallel/communicator.h"

namespace strata::models {

struct AttentionConfig {
  int64_t d_model = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // 0: n_heads (plain multi-head); must divide n_heads
  int64_t head_dim = 0;    // 0: d_model / n_heads
  bool causal = false;
  bool rope = false;
  double rope_base = 10000.0;
  double scale = -1.0;  // < 0: 1/sqrt(head_dim); T5 uses 1 (unscaled)
  bool bias = false;    // biases on the four projections
  Init init = Init::normal(0.02);
  Init out_init = Init::normal(0.02);  // o_proj (GPT-2 style scaled inits go here)
  // q_proj only, when it differs from `init` (T5 folds the 1/sqrt(d_kv) score scale into it).
  std::optional<Init> q_init;
  // Tensor parallelism (not owned; null or a group of one: a single process). Splits the heads:
  // q/k/v are column-parallel (rank r holds query heads [r*H/tp, (r+1)*H/tp) and kv heads
  // likewise), o is row-parallel. n_heads and n_kv_heads must divide by the group size.
  parallel::Communicator* tp = nullptr;
};

// Per-call inputs that are not parameters.
struct AttentionContext {
  Tensor memory;             // cross-attention: keys/values from this [B, Lk, d_model]
  Tensor bias;               // additive, broadcastable to [B, H, Lq, Lk] (T5 relative positions)
  Tensor key_padding_mask;   // bool [B, Lk], true = attend
  KVCache* cache = nullptr;  // incremental decoding: the new keys/values are appended to it
};

class MultiHeadAttention : public Module {
 public:
  explicit MultiHeadAttention(const AttentionConfig& cfg);

  // x [B, L, d_model] -> [B, L, d_model]. With a cache, x holds the t newest positions, RoPE
  // starts at cache->positions(), and attention reads the whole cache.
  virtual Tensor forward(const Tensor& x, const AttentionContext& ctx = {}) const;

  struct QKV {
    Tensor q;  // [B, H, Lq, D]
    Tensor k;  // [B, H_kv, Lk, D]
    Tensor v;  // [B, H_kv, Lk, D]
  };
  // Projections, head split and RoPE (self-attention only) at positions pos_offset...
  virtual QKV project(const Tensor& x, const Tensor& memory, int64_t pos_offset) const;
  // Cache update, GQA head expansion, fused attention and output projection.
  virtual Tensor attend(const QKV& qkv, const AttentionContext& ctx) const;

  // [B, H_kv, ...] -> [B, H, ...]: kv head j serves query heads j*g .. j*g+g-1 (g = H / H_kv),
  // the layout of torch's repeat_interleave and of Llama's GQA. (Under tensor parallelism the
  // local heads: a rank's query heads read exactly its kv heads.)
  Tensor expand_kv_heads(const Tensor& t) const;

  // The input as the projections read it: under tensor parallelism copy_to_tp (one backward
  // all-reduce for q, k and v together), else x itself. For callers that run the projections
  // themselves (T5's cross-attention keys and values).
  Tensor enter_tp(const Tensor& x) const;
  // Heads computed by this process: all of them, or this rank's share under tensor parallelism.
  int64_t local_heads() const { return local_heads_; }
  int64_t local_kv_heads() const { return local_kv_heads_; }

  const AttentionConfig& config() const { return cfg_; }
  const Linear& q_proj() const { return *q_proj_; }
  const Linear& k_proj() const { return *k_proj_; }
  const Linear& v_proj() const { return *v_proj_; }
  const Linear& o_proj() const { return *o_proj_; }

 private:
  AttentionConfig cfg_;
  parallel::Communicator* tp_;  // null unless the heads are split over more than one rank
  int64_t local_heads_, local_kv_heads_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, o_proj_;
};

}  // namespace strata::models
