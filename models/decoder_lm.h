#pragma once
// A Llama-style decoder-only LM: token embedding, n pre-norm blocks
//   h = h + attn(rms_norm(h))      (causal, RoPE, grouped-query heads)
//   h = h + ffn(rms_norm(h))       (SwiGLU)
// a final RMSNorm and an LM head (own weight or tied to the embedding). No biases, no absolute
// positions. Parameter names:
//   embed.weight
//   layers.<i>.attn_norm.weight
//   layers.<i>.attn.{q,k,v,o}_proj.weight
//   layers.<i>.ffn_norm.weight
//   layers.<i>.ffn.{gate,up,down}_proj.weight
//   norm.weight
//   lm_head.weight                 (untied only)
#include "models/attention.h"
#include "models/causal_lm.h"
#include "models/embedding.h"
#include "models/feed_forward.h"
#include "models/lm_head.h"
#include "models/pipeline_stage.h"
#include "models/rms_norm.h"

namespace strata::models {

struct DecoderConfig {
  int64_t vocab = 0;
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  int64_t n_kv_heads = 0;  // 0: n_heads
  int64_t d_ff = 0;
  int64_t max_seq = 0;  // default KV-cache capacity and the length flops_per_token assumes
  double rope_base = 10000.0;
  double norm_eps = 1e-5;
  bool tie_embeddings = false;
  double dropout = 0.0;    // residual dropout on the embedding and on each sublayer's output
  double init_std = 0.02;  // N(0, init_std) for every matrix; norm weights start at 1
  // How forward passes compute (models/precision.h): f32, or bf16 with f32 master weights.
  Precision precision;
  // Tensor parallelism (not owned; null or a group of one: a single process). Heads, kv heads,
  // d_ff and the vocabulary are split over the group (docs/parallelism.md); every parameter keeps
  // its name and records its global shape (Module::sharding), and the numbers equal the
  // single-process model's.
  parallel::Communicator* tp = nullptr;

  int64_t head_dim() const { return d_model / n_heads; }
  int64_t kv_heads() const { return n_kv_heads == 0 ? n_heads : n_kv_heads; }
  // Throws strata::Error naming the first bad field.
  void validate() const;

  // The fields a `strata train` option overrides (core/option_names.h); unset, a preset's value
  // stands (launch/model_options.cpp). vocab and precision are common to every model type.
  template <class V>
  void visit_options(V& v) {
    v("model.d_model", d_model, "hidden size");
    v("model.n_layers", n_layers, "blocks");
    v("model.n_heads", n_heads, "attention heads");
    v("model.n_kv_heads", n_kv_heads, "key/value heads for grouped-query attention");
    v("model.d_ff", d_ff, "SwiGLU hidden width");
    v("model.max_seq", max_seq, "KV-cache capacity (default data.seq_len)");
    v("model.rope_base", rope_base, "RoPE frequency base");
    v("model.norm_eps", norm_eps, "normalisation epsilon");
    v("model.tie_embeddings", tie_embeddings, "share the LM head with the embedding");
    v("model.dropout", dropout, "residual dropout in training mode");
    v("model.init_std", init_std, "std of the normal initialisation");
  }
};

class DecoderBlock : public Module {
 public:
  DecoderBlock(const DecoderConfig& cfg, int64_t layer_index);
  // x [B, L, d_model]; `dropout` is applied to both sublayer outputs when training.
  Tensor forward(const Tensor& x, KVCache* cache, const RandomKey& dropout_key) const;
  const MultiHeadAttention& attn() const { return *attn_; }
  const FeedForward& ffn() const { return *ffn_; }

 private:
  double dropout_;
  int64_t index_;
  std::shared_ptr<RMSNorm> attn_norm_, ffn_norm_;
  std::shared_ptr<MultiHeadAttention> attn_;
  std::shared_ptr<FeedForward> ffn_;
};

class DecoderLM : public CausalLM {
 public:
  // Builds the model, or `part` of it (models/pipeline_stage.h: a pipeline stage is a range of
  // the blocks, with the embedding on the first and the final norm, head and loss on the last),
  // and initialises it from `seed` (Module::init_parameters). A part with the head but not the
  // embedding holds a replica of a tied embedding for its head.
  DecoderLM(const DecoderConfig& cfg, uint64_t seed, const ModelPart& part = {});

  // The forward pass in its three pieces, each run by the part that holds it.
  // pre: the token embeddings of ids [B, L] integer, with the embedding dropout.
  Tensor embed_tokens(const Tensor& ids) const;
  // This part's blocks over the residual stream h [B, L, d_model]; `cache` (the whole model's
  // decoding caches, one per layer) only for the whole model.
  Tensor run_blocks(Tensor h, ModelCache* cache = nullptr) const;
  // post: the mean next-token cross-entropy of the last block's output h against targets [B, L]
  // (-100 skipped); under tensor parallelism vocab-parallel, the full logits never gathered.
  // `hits`, when given, counts argmax hits among the positions with a target.
  Tensor head_loss(const Tensor& h, const Tensor& targets, StageHits* hits = nullptr) const;
  // post, for a loss on other targets (Sophia's sampled labels): the whole vocabulary's logits
  // [B, L, vocab] of the last block's output (gathered under tensor parallelism, with autograd).
  Tensor head_logits(const Tensor& h) const;
  const ModelPart& part() const { return part_; }

  Tensor forward(const Tensor& ids) const override;
  Tensor forward_step(const Tensor& ids, ModelCache& cache) const override;
  ModelCache make_cache(int64_t batch, int64_t capacity = 0) const override;  // 0: max_seq
  int64_t vocab_size() const override { return cfg_.vocab; }
  int64_t max_seq_len() const override { return cfg_.max_seq; }

  // Mean next-token cross-entropy: targets [B, L] (ignore_index -100 skipped). Under tensor
  // parallelism the vocab-parallel cross-entropy: the full logits are never gathered.
  Tensor loss(const Tensor& ids, const Tensor& targets) const;
  // Final hidden states [B, L, d_model] (after the final norm), for heads other than the LM head.
  Tensor hidden(const Tensor& ids, ModelCache* cache = nullptr) const;

  // Dropout masks are keyed by (seed, RngStream::Dropout + site, step): the trainer sets the step.
  void set_step(uint64_t step) { step_ = step; }
  // The batch rows this model sees are rows first, first + stride, ... of the batch the masks are
  // drawn for (a data-parallel rank's rows; RandomKey::row_first), so every layout drops the
  // elements one process drops. Default 0 / 1: the batch is the whole batch.
  void set_batch_rows(int64_t first, int64_t stride) { row_first_ = first, row_stride_ = stride; }

  // Parameter counts. Non-embedding excludes the input embedding table (and so a tied head).
  int64_t num_non_embedding_parameters() const;
  // The closed form of docs/models.md; equals num_parameters() of a model built from cfg.
  static int64_t count_parameters(const DecoderConfig& cfg, bool include_embeddings = true);
  // Training FLOPs per token at context length seq_len (0: max_seq), PaLM's convention:
  //   6 * N_matmul + 12 * n_layers * n_heads * head_dim * seq_len
  // N_matmul counts every weight a matmul reads: all Linear weights plus the LM head's
  // vocab * d_model (tied or not); the attention term counts QK^T and AV over the full
  // context (no causal halving), forward + backward.
  double flops_per_token(int64_t seq_len = 0) const;
  static double flops_per_token(const DecoderConfig& cfg, int64_t seq_len);

  const DecoderConfig& config() const { return cfg_; }
  // Block i of the whole model's numbering (in this part's range).
  const DecoderBlock& layer(int64_t i) const { return (*layers_)[size_t(i - part_.begin)]; }

 private:
  void check_whole(const char* what) const;
  RandomKey dropout_base() const;

  DecoderConfig cfg_;
  ModelPart part_;
  uint64_t seed_;
  uint64_t step_ = 0;
  int64_t row_first_ = 0, row_stride_ = 1;
  std::shared_ptr<Embedding> embed_;
  std::shared_ptr<ModuleList<DecoderBlock>> layers_;
  std::shared_ptr<RMSNorm> norm_;
  std::shared_ptr<LMHead> lm_head_;
};

}  // namespace strata::models
