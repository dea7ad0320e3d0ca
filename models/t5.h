#pragma once
// T5 v1.1 as trained by nanoT5 (ALGORITHMS.md 1.1): an encoder-decoder with one input embedding
// shared by both stacks, pre-norm blocks with RMSNorm (eps 1e-6), unscaled attention (the
// 1/sqrt(d_kv) lives in W_q's init) plus a learned relative position bias per stack
// (bidirectional buckets in the encoder, causal in the decoder), cross-attention without a
// position bias, a gated-GELU (tanh) feed-forward, final RMSNorms, an untied LM head without
// logit scaling, and no biases anywhere. Parameter names:
//   shared.weight                                     [vocab, d_model]
//   encoder.layers.<i>.attn_norm.weight
//   encoder.layers.<i>.attn.{q,k,v,o}_proj.weight
//   encoder.layers.<i>.rel_bias.weight                [buckets, heads] (see share_position_bias)
//   encoder.layers.<i>.ffn_norm.weight
//   encoder.layers.<i>.ffn.{gate,up,down}_proj.weight (gate = HF wi_0, up = wi_1, down = wo)
//   encoder.norm.weight
//   decoder.layers.<i>.self_attn_norm.weight
//   decoder.layers.<i>.self_attn.{q,k,v,o}_proj.weight
//   decoder.layers.<i>.rel_bias.weight
//   decoder.layers.<i>.cross_attn_norm.weight
//   decoder.layers.<i>.cross_attn.{q,k,v,o}_proj.weight
//   decoder.layers.<i>.ffn_norm.weight
//   decoder.layers.<i>.ffn.{gate,up,down}_proj.weight
//   decoder.norm.weight
//   lm_head.weight                                    [vocab, d_model]
#include <optional>
#include <string>
#include <vector>

#include "core/random/philox.h"
#include "models/attention.h"
#include "models/embedding.h"
#include "models/feed_forward.h"
#include "models/kv_cache.h"
#include "models/lm_head.h"
#include "models/pipeline_stage.h"
#include "models/rms_norm.h"
#include "models/t5_relative_bias.h"

namespace strata::models {

struct T5Config {
  int64_t vocab = 32128;
  int64_t d_model = 768;
  int64_t d_kv = 64;  // per-head size; the attention width is n_heads * d_kv
  int64_t n_heads = 12;
  int64_t d_ff = 2048;
  int64_t n_layers = 12;         // encoder blocks
  int64_t n_decoder_layers = 0;  // 0: n_layers
  double norm_eps = 1e-6;
  int64_t relative_buckets = 32;
  int64_t relative_max_distance = 128;
  // true (nanoT5, HF): block 0 of each stack owns the relative bias table and every block of the
  // stack reuses its bias. false (No Train No Gain): every block owns a table.
  bool share_position_bias = true;
  // Training only: on the embedding output, each sublayer output and the final norm output of
  // both stacks (HF's sites except attention probabilities and the FFN's inner activation).
  // nanoT5 trains with 0.
  double dropout = 0.0;
  // How forward passes compute (models/precision.h): f32, or bf16 with f32 master weights.
  Precision precision;
  int64_t decoder_start_id = 0;
  int64_t pad_id = 0;
  int64_t eos_id = 1;
  // Tensor parallelism (not owned; null or a group of one: a single process). Heads (with the
  // relative-bias tables), d_ff and the vocabulary (shared embedding and LM head) are split over
  // the group (docs/parallelism.md); the numbers equal the single-process model's.
  parallel::Communicator* tp = nullptr;

  int64_t inner_dim() const { return n_heads * d_kv; }
  int64_t decoder_layers() const { return n_decoder_layers > 0 ? n_decoder_layers : n_layers; }
  // Throws strata::Error naming the first bad field.
  void validate() const;

  // The fields a `strata train` option overrides (core/option_names.h); unset, a preset's value
  // stands (launch/model_options.cpp). No init_std: T5 v1.1 scales each matrix by its fan-in
  // (ALGORITHMS.md 1.1).
  template <class V>
  void visit_options(V& v) {
    v("model.d_model", d_model, "hidden size");
    v("model.n_layers", n_layers, "encoder blocks");
    v("model.n_decoder_layers", n_decoder_layers, "decoder blocks (0: n_layers)");
    v("model.n_heads", n_heads, "attention heads");
    v("model.d_kv", d_kv, "per-head width");
    v("model.d_ff", d_ff, "gated-GELU hidden width");
    v("model.relative_buckets", relative_buckets, "relative-position buckets");
    v("model.relative_max_distance", relative_max_distance, "relative-position max distance");
    v("model.share_position_bias", share_position_bias,
      "true: block 0's bias table for the whole stack (nanoT5); false: one per block (NTNG)");
    v("model.norm_eps", norm_eps, "normalisation epsilon");
    v("model.dropout", dropout, "hidden dropout in training mode");
  }
};

// "t5-tiny" (tests, seconds per step), "t5-small" (minutes on 2 cores), "t5-base" (nanoT5's
// t5-v1_1-base, 247,577,856 parameters). Throws for another name, listing these.
T5Config t5_preset(const std::string& name);
std::vector<std::string> t5_preset_names();

class T5EncoderBlock : public Module {
 public:
  T5EncoderBlock(const T5Config& cfg, int64_t index, bool owns_bias);
  // x [B, L, d]; bias [1, H, L, L]; mask bool [B, L] or undefined.
  Tensor forward(const Tensor& x, const Tensor& bias, const Tensor& mask,
                 const RandomKey& dropout_key) const;
  const T5RelativeBias* rel_bias() const { return rel_bias_.get(); }  // null: uses block 0's
  const MultiHeadAttention& attn() const { return *attn_; }

 private:
  double dropout_;
  int64_t index_;
  std::shared_ptr<RMSNorm> attn_norm_, ffn_norm_;
  std::shared_ptr<MultiHeadAttention> attn_;
  std::shared_ptr<T5RelativeBias> rel_bias_;
  std::shared_ptr<FeedForward> ffn_;
};

// Cross-attention keys/values of one decoder block, projected once from the encoder output.
struct T5CrossKV {
  Tensor k, v;  // [B, H, Ls, d_kv]
};

class T5DecoderBlock : public Module {
 public:
  T5DecoderBlock(const T5Config& cfg, int64_t index, bool owns_bias);
  // x [B, t, d]: the t newest decoder positions; self_bias [1, H, t, Lk]; memory [B, Ls, d] (the
  // encoder output); memory_mask bool [B, Ls] or undefined. With a cache, self-attention appends
  // to it and reads all cached positions, and `cross` (when given) replaces the projection of
  // memory.
  Tensor forward(const Tensor& x, const Tensor& self_bias, const Tensor& memory,
                 const Tensor& memory_mask, KVCache* cache, const T5CrossKV* cross,
                 const RandomKey& dropout_key) const;
  T5CrossKV project_memory(const Tensor& memory) const;
  const T5RelativeBias* rel_bias() const { return rel_bias_.get(); }
  const MultiHeadAttention& self_attn() const { return *self_attn_; }
  const MultiHeadAttention& cross_attn() const { return *cross_attn_; }

 private:
  double dropout_;
  int64_t index_;
  std::shared_ptr<RMSNorm> self_attn_norm_, cross_attn_norm_, ffn_norm_;
  std::shared_ptr<MultiHeadAttention> self_attn_, cross_attn_;
  std::shared_ptr<T5RelativeBias> rel_bias_;
  std::shared_ptr<FeedForward> ffn_;
};

// A stack: blocks and the final norm; the embedding lives in T5Model. Built whole, or with
// blocks [begin, end) of the stack and the norm only `with_norm` (a pipeline stage's part;
// blocks keep the whole stack's names). The forward pass in pieces: run_blocks over the blocks
// held, then finish (the final norm and its dropout). `shared_bias` carries the position bias
// block 0 made (share_position_bias) to the blocks that reuse it: in and out, so a stage can
// receive it and pass it on.
class T5Encoder : public Module {
 public:
  explicit T5Encoder(const T5Config& cfg, int64_t begin = 0, int64_t end = -1,
                     bool with_norm = true);
  // The whole stack.
  Tensor forward(const Tensor& x, const Tensor& mask, const RandomKey& dropout_key) const;
  Tensor run_blocks(Tensor h, Tensor& shared_bias, const Tensor& mask,
                    const RandomKey& dropout_key) const;
  Tensor finish(const Tensor& h, const RandomKey& dropout_key) const;
  // Block i of the stack's numbering (in this part's range).
  const T5EncoderBlock& layer(int64_t i) const { return (*layers_)[size_t(i - begin_)]; }

 private:
  T5Config cfg_;
  int64_t begin_, end_;
  std::shared_ptr<ModuleList<T5EncoderBlock>> layers_;
  std::shared_ptr<RMSNorm> norm_;
};

class T5Decoder : public Module {
 public:
  explicit T5Decoder(const T5Config& cfg, int64_t begin = 0, int64_t end = -1,
                     bool with_norm = true);
  // x [B, t, d] at decoder positions pos_offset .. pos_offset + t - 1. caches: one per block
  // (or null); cross: one per block (or null: project memory). The whole stack.
  Tensor forward(const Tensor& x, const Tensor& memory, const Tensor& memory_mask,
                 ModelCache* caches, const std::vector<T5CrossKV>* cross,
                 const RandomKey& dropout_key) const;
  // The blocks held, over a full target prefix (no caches).
  Tensor run_blocks(Tensor h, Tensor& shared_bias, const Tensor& memory, const Tensor& memory_mask,
                    const RandomKey& dropout_key) const;
  Tensor finish(const Tensor& h, const RandomKey& dropout_key) const;
  const T5DecoderBlock& layer(int64_t i) const { return (*layers_)[size_t(i - begin_)]; }

 private:
  Tensor run(Tensor h, Tensor& shared_bias, const Tensor& memory, const Tensor& memory_mask,
             ModelCache* caches, const std::vector<T5CrossKV>* cross,
             const RandomKey& dropout_key) const;

  T5Config cfg_;
  int64_t begin_, end_;
  std::shared_ptr<ModuleList<T5DecoderBlock>> layers_;
  std::shared_ptr<RMSNorm> norm_;
};

// Incremental decoding state: the decoder's self-attention caches and the cross-attention
// keys/values, computed once per encoder output.
struct T5DecodeState {
  ModelCache self;
  std::vector<T5CrossKV> cross;
  Tensor memory;       // encoder output [B, Ls, d]
  Tensor memory_mask;  // bool [B, Ls] or undefined
  int64_t positions() const { return self.positions(); }
};

struct T5GenerateOptions {
  int64_t max_new_tokens = 32;
  bool use_cache = true;    // false: recompute the whole decoder each step (the reference)
  bool stop_at_eos = true;  // a sequence that emitted eos_id is padded with pad_id afterwards
};

class T5Model : public Module {
 public:
  // Builds the model and initialises it from `seed` with the inits of ALGORITHMS.md 1.1
  // (Module::init_parameters). Without a seed the random inits are skipped (matrices stay zero,
  // norm weights 1): for loading a checkpoint, or counting a large model's parameters cheaply;
  // dropout then keys on seed 0.
  T5Model(const T5Config& cfg, std::optional<uint64_t> seed);
  // `part` of the model (models/pipeline_stage.h): its blocks are numbered in execution order,
  // the encoder's n_layers then the decoder's; `pre` holds `shared` (both stacks' embedding),
  // the part ending at or after the last encoder block holds the encoder's norm, `post` the
  // decoder's norm, `lm_head` and the loss. A pipeline stage is such a part
  // (models/pipeline_stage_t5.h).
  T5Model(const T5Config& cfg, std::optional<uint64_t> seed, const ModelPart& part);

  // Encoder: ids [B, Ls] (i32/i64), mask [B, Ls] (bool or integer, nonzero = real token;
  // undefined = all real) -> hidden [B, Ls, d] after the final norm.
  Tensor encode(const Tensor& input_ids, const Tensor& encoder_mask = {}) const;
  // Decoder over a full target prefix: ids [B, Lt] -> logits [B, Lt, vocab].
  Tensor decode(const Tensor& decoder_input_ids, const Tensor& encoder_out,
                const Tensor& encoder_mask = {}) const;
  // encode + decode.
  Tensor forward(const Tensor& input_ids, const Tensor& decoder_input_ids,
                 const Tensor& encoder_mask = {}) const;
  // Mean cross-entropy over the targets: labels [B, Lt] (-100 ignored); the decoder reads the
  // labels shifted right (shift_right). Vocab-parallel under tensor parallelism.
  Tensor loss(const Tensor& input_ids, const Tensor& labels, const Tensor& encoder_mask = {}) const;
  // [start, labels[:, :-1]] with -100 replaced by pad_id; i64.
  static Tensor shift_right(const Tensor& labels, int64_t decoder_start_id, int64_t pad_id);

  // Incremental decoding (inference only, no autograd history).
  T5DecodeState start_decoding(const Tensor& encoder_out, const Tensor& encoder_mask,
                               int64_t capacity) const;
  // ids [B, t]: the t decoder tokens after state.positions() -> logits [B, t, vocab].
  Tensor decode_step(const Tensor& ids, T5DecodeState& state) const;
  // Greedy decoding: [B, 1 + n] i64 starting with decoder_start_id, n <= max_new_tokens (stops
  // early once every sequence has emitted eos when stop_at_eos). Runs in eval mode without
  // autograd (the model's mode is restored).
  Tensor generate(const Tensor& input_ids, const Tensor& encoder_mask,
                  const T5GenerateOptions& opt);

  // Dropout masks are keyed by (seed, RngStream::Dropout | site << 8, step).
  void set_step(uint64_t step) { step_ = step; }
  // The batch rows this model sees are rows first, first + stride, ... of the batch the masks are
  // drawn for (a data-parallel rank's rows; RandomKey::row_first). Default 0 / 1.
  void set_batch_rows(int64_t first, int64_t stride) { row_first_ = first, row_stride_ = stride; }

  // The closed form of docs/models.md; equals num_parameters() of a model built from cfg.
  static int64_t count_parameters(const T5Config& cfg);
  // Training FLOPs (forward + backward, PaLM convention as DecoderLM::flops_per_token) of one
  // example with enc_len input and dec_len target tokens.
  static double flops_per_example(const T5Config& cfg, int64_t enc_len, int64_t dec_len);

  const T5Config& config() const { return cfg_; }
  const T5Encoder& encoder() const;
  const T5Decoder& decoder() const;
  const ModelPart& part() const { return part_; }
  // All blocks of both stacks: what a ModelPart or StageLayout for T5 counts.
  static int64_t num_blocks(const T5Config& cfg) { return cfg.n_layers + cfg.decoder_layers(); }

  // The forward pass in pieces, each run by the part that holds it (loss() is them in a row):
  // the shared embedding of ids for stack 0 (encoder) or 1 (decoder), with its dropout; the
  // stacks' run_blocks and finish; and the loss of the decoder's finished output against labels
  // [B, Lt] (-100 ignored), counting argmax hits when `hits` is given.
  Tensor embed(const Tensor& ids, uint32_t stack) const;
  Tensor head_loss(const Tensor& decoder_out, const Tensor& labels,
                   StageHits* hits = nullptr) const;
  // The whole vocabulary's logits of decoder_out (gathered under tensor parallelism, with
  // autograd): for a loss on other targets (Sophia's sampled labels).
  Tensor head_logits(const Tensor& decoder_out) const;
  // Dropout masks of stack 0 (encoder) or 1 (decoder) for this step and batch rows.
  RandomKey dropout_key(uint32_t stack) const;
  // encoder_mask as bool [batch, len] (nonzero integers = real token), or undefined.
  Tensor bool_mask(const Tensor& encoder_mask, int64_t batch, int64_t len) const;

 private:
  // The decoder's final hidden states [B, Lt, d] (what decode feeds the LM head).
  Tensor decode_hidden(const Tensor& decoder_input_ids, const Tensor& encoder_out,
                       const Tensor& encoder_mask) const;
  void check_whole(const char* what) const;

  T5Config cfg_;
  ModelPart part_;
  uint64_t seed_;
  uint64_t step_ = 0;
  int64_t row_first_ = 0, row_stride_ = 1;
  std::shared_ptr<Embedding> shared_;
  std::shared_ptr<T5Encoder> encoder_;
  std::shared_ptr<T5Decoder> decoder_;
  std::shared_ptr<LMHead> lm_head_;
};

}  // namespace strata::models
