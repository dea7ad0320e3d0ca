#pragma once
// Crammed BERT (Geiping & Goldstein's "Cramming" as forked by No Train No Gain, arch bert-c5;
// docs/ALGORITHMS.md section 2.1): an encoder-only masked LM with
//   - word embedding (pad row zero at init, no gradient through pad lookups, as
//     nn.Embedding(padding_idx)) + scaled sinusoidal positions, then LayerNorm (dropout after);
//   - n pre-norm blocks  h += attn(LN(h));  h += glu_ffn(LN(h))  (bidirectional attention,
//     softmax(QK^T/sqrt(dh))V, no biases on any dense layer; GLU: out = gelu(gate) * x);
//   - a final LayerNorm;
//   - MLM head: Linear d->d without bias (skip_head_transform), then the decoder tied to the
//     word embedding (no decoder bias), evaluated only at the masked positions ("sparse
//     prediction").
// LayerNorms keep their bias: Cramming builds them with torch.nn.LayerNorm, which has one.
//
// Parameter names (BertMLM; BertClassifier shares every `encoder.*` name):
//   encoder.embed.word.weight                 [vocab, d]   (also the MLM decoder)
//   encoder.embed.pos_scale                   [1]          (init 1/sqrt(d))
//   encoder.embed.norm.{weight,bias}
//   encoder.layers.<i>.attn_norm.{weight,bias}
//   encoder.layers.<i>.attn.{q,k,v,o}_proj.weight
//   encoder.layers.<i>.ffn_norm.{weight,bias}
//   encoder.layers.<i>.ffn.{gate,up,down}_proj.weight   (gate/up [d_ff/2, d], down [d, d_ff/2])
//   encoder.final_norm.{weight,bias}
//   mlm_head.weight                           [d, d]
//   pooler.{weight,bias}, classifier.{weight,bias}        (BertClassifier only)
#include <string>
#include <vector>

#include "models/attention.h"
#include "models/embedding.h"
#include "models/feed_forward.h"
#include "models/layer_norm.h"
#include "models/linear.h"
#include "models/lm_head.h"
#include "models/pipeline_stage.h"

namespace strata::models {

struct BertConfig {
  int64_t vocab = 0;
  int64_t d_model = 0;
  int64_t n_layers = 0;
  int64_t n_heads = 0;
  // Cramming's intermed_size: the width of the first FFN matmul. The GLU splits it into halves
  // (x, gate), so the second matmul reads d_ff / 2 (bert-c5: 3072 -> 1536 -> 768).
  int64_t d_ff = 0;
  int64_t max_seq = 128;  // positions the sinusoid table covers
  double norm_eps = 1e-12;
  double init_std = 0.02;  // N(0, init_std) for every matrix and the word embedding
  int64_t pad_id = 0;      // its embedding row starts at 0 and gets no lookup gradient; < 0: none
  // Hidden dropout (embedding output, both sublayer outputs, pooler output), training mode only.
  // 0 in the pre-training presets: Cramming configures 0.1 but pre-trains in eval mode
  // (pretrain_in_train_mode: False). Set 0.1 for fine-tuning as Cramming does.
  double dropout = 0.0;
  // How forward passes compute (models/precision.h): f32, or bf16 with f32 master weights.
  Precision precision;
  // Tensor parallelism (not owned; null or a group of one: a single process). Heads, the GLU
  // width d_ff / 2 and the vocabulary (word embedding and tied decoder) are split over the group
  // (docs/parallelism.md); the numbers equal the single-process model's.
  parallel::Communicator* tp = nullptr;

  int64_t head_dim() const { return d_model / n_heads; }
  int64_t glu_dim() const { return d_ff / 2; }

  // The fields a `strata train` option overrides (core/option_names.h); unset, a preset's value
  // stands (launch/model_options.cpp).
  template <class V>
  void visit_options(V& v) {
    v("model.d_model", d_model, "hidden size");
    v("model.n_layers", n_layers, "blocks");
    v("model.n_heads", n_heads, "attention heads");
    v("model.d_ff", d_ff, "the GLU's first matmul width, twice its hidden");
    v("model.max_seq", max_seq, "positions of the sinusoid table");
    v("model.norm_eps", norm_eps, "normalisation epsilon");
    v("model.dropout", dropout, "hidden dropout in training mode");
    v("model.init_std", init_std, "std of the normal initialisation");
  }
  // Throws strata::Error naming the first bad field.
  void validate() const;
};

// Presets: "bert-tiny" (tests: seconds per step), "bert-small" (README runs: minutes on 2
// cores), "bert-c5" (the paper's 16 x 768 model, vocab 32768). vocab > 0 overrides the preset's.
BertConfig bert_preset(const std::string& name, int64_t vocab = 0);
std::vector<std::string> bert_preset_names();

class BertEmbeddings : public Module {
 public:
  explicit BertEmbeddings(const BertConfig& cfg);
  // ids [B, L] -> LayerNorm(word(ids) + pos_scale * sinusoid[:L]) [B, L, d] (before dropout).
  Tensor forward(const Tensor& ids) const;
  const Embedding& word() const { return *word_; }
  std::shared_ptr<const Embedding> word_ptr() const { return word_; }
  // The fixed table [max_seq, d] in f64: sin at even channels 2i, cos at odd 2i+1, frequency
  // 10000^(-2i/d) (Vaswani et al., Cramming's SinusoidalPositional).
  const Tensor& sinusoid() const { return sinusoid_; }

 private:
  int64_t pad_id_;
  std::shared_ptr<Embedding> word_;
  Tensor& pos_scale_;
  std::shared_ptr<LayerNorm> norm_;
  Tensor sinusoid_;
};

class BertLayer : public Module {
 public:
  BertLayer(const BertConfig& cfg, int64_t layer_index);
  // x [B, L, d]; key_padding_mask bool [B, L] (true = real token) or undefined.
  Tensor forward(const Tensor& x, const Tensor& key_padding_mask,
                 const RandomKey& dropout_key) const;
  const MultiHeadAttention& attn() const { return *attn_; }
  const FeedForward& ffn() const { return *ffn_; }

 private:
  double dropout_;
  int64_t index_;
  std::shared_ptr<LayerNorm> attn_norm_, ffn_norm_;
  std::shared_ptr<MultiHeadAttention> attn_;
  std::shared_ptr<FeedForward> ffn_;
};

// Embeddings, the blocks and the final LayerNorm: the part pre-training and fine-tuning share.
// Built whole, or as `part` of it (models/pipeline_stage.h): the embeddings with `pre`, blocks
// [begin, end), the final norm with `post`; a part with `post` but not `pre` holds a replica of
// the word table (for the tied MLM decoder) under the same name, encoder.embed.word.
class BertEncoder : public Module {
 public:
  explicit BertEncoder(const BertConfig& cfg, const ModelPart& part = {});
  // ids [B, L] (i32/i64), L <= max_seq -> hidden [B, L, d] after the final norm. `dropout_key`
  // is (seed, step) as the models' set_step sets it; sites 0 (embedding), 2i+1, 2i+2 (block i).
  // The whole encoder only.
  Tensor forward(const Tensor& ids, const Tensor& key_padding_mask,
                 const RandomKey& dropout_key) const;
  // The forward pass in its pieces, each run by the part that holds it: the embeddings with
  // their dropout (pre), this part's blocks, the final norm (post).
  Tensor embed_tokens(const Tensor& ids, const RandomKey& dropout_key) const;
  Tensor run_blocks(Tensor h, const Tensor& key_padding_mask, const RandomKey& dropout_key) const;
  Tensor final_norm(const Tensor& h) const;

  const BertEmbeddings& embed() const;
  // The word table this part holds (the embeddings', or the post part's replica).
  std::shared_ptr<const Embedding> word_ptr() const { return word_; }
  // Block i of the whole encoder's numbering (in this part's range).
  const BertLayer& layer(int64_t i) const { return (*layers_)[size_t(i - part_.begin)]; }
  const ModelPart& part() const { return part_; }

 private:
  BertConfig cfg_;
  ModelPart part_;
  std::shared_ptr<BertEmbeddings> embed_;
  std::shared_ptr<const Embedding> word_;
  std::shared_ptr<ModuleList<BertLayer>> layers_;
  std::shared_ptr<LayerNorm> final_norm_;
};

// What mlm() computed: the loss and the pieces a caller may want to inspect or log.
struct MLMOutput {
  Tensor loss;       // scalar: mean cross-entropy over the masked positions
  Tensor logits;     // [M, vocab] at the masked positions, in row-major (b, l) order; under
                     // tensor parallelism this rank's vocab slice [M, vocab / tp]
  Tensor positions;  // i64 [M]: flat indices b * L + l of those positions
  Tensor targets;    // i64 [M]: their labels
};

class BertMLM : public Module {
 public:
  // Builds the model, or `part` of it (BertEncoder's part; the MLM head and the tied decoder
  // with `post`: a pipeline stage is such a part, models/pipeline_stage_bert.h), and initialises
  // it from `seed` (init_parameters, then the pad row of every copy of the word table to 0).
  BertMLM(const BertConfig& cfg, uint64_t seed, const ModelPart& part = {});

  // ids [B, L] -> hidden [B, L, d]. key_padding_mask: bool [B, L], true = real token.
  Tensor forward(const Tensor& ids, const Tensor& key_padding_mask = {}) const;
  // hidden [..., d] -> logits [..., vocab]: mlm_head, then the tied decoder.
  Tensor mlm_logits(const Tensor& hidden) const;
  // Sparse prediction: the head and the loss run only at positions whose label != -100, and ALL
  // of them are taken (Cramming truncates to a fixed count round(0.15 * N); see docs/models.md).
  // labels [B, L] integer. With no masked position the loss is an exact 0 that still
  // back-propagates (zero gradients) instead of Cramming's NaN.
  MLMOutput mlm(const Tensor& ids, const Tensor& labels, const Tensor& key_padding_mask = {}) const;
  // The post part of mlm(): the sparse prediction and its loss from the encoder's final hidden
  // states [B, L, d]. `hits`, when given, counts argmax hits at the labelled positions.
  MLMOutput predict_masked(const Tensor& hidden, const Tensor& labels,
                           StageHits* hits = nullptr) const;
  // The dropout key of this model's step and batch rows (BertEncoder's pieces take it).
  RandomKey dropout_base() const;
  Tensor mlm_loss(const Tensor& ids, const Tensor& labels,
                  const Tensor& key_padding_mask = {}) const {
    return mlm(ids, labels, key_padding_mask).loss;
  }

  // Dropout masks are keyed by (seed, RngStream::Dropout + site, step): the trainer sets the step.
  void set_step(uint64_t step) { step_ = step; }
  // The batch rows this model sees are rows first, first + stride, ... of the batch the masks are
  // drawn for (a data-parallel rank's rows; RandomKey::row_first). Default 0 / 1.
  void set_batch_rows(int64_t first, int64_t stride) { row_first_ = first, row_stride_ = stride; }

  const BertConfig& config() const { return cfg_; }
  const BertEncoder& encoder() const { return *encoder_; }
  const ModelPart& part() const { return encoder_->part(); }

  // The closed form of docs/models.md; equals num_parameters() of a model built from cfg.
  static int64_t count_parameters(const BertConfig& cfg);
  // Training FLOPs per token (PaLM convention, as DecoderLM::flops_per_token): 6 x encoder matmul
  // weights + 6 x mask_fraction x (head + decoder weights) + 12 * n_layers * d * seq_len.
  static double flops_per_token(const BertConfig& cfg, int64_t seq_len,
                                double mask_fraction = 0.15);

 private:
  BertConfig cfg_;
  uint64_t seed_;
  uint64_t step_ = 0;
  int64_t row_first_ = 0, row_stride_ = 1;
  std::shared_ptr<BertEncoder> encoder_;
  std::shared_ptr<Linear> mlm_head_;
  std::shared_ptr<LMHead> decoder_;
};

// Sequence classification for fine-tuning: hidden state of the first token -> pooler (Linear
// d->d with bias, tanh, dropout) -> classifier (Linear d->classes with bias). Both head layers
// have biases: Cramming builds them with torch.nn.Linear's default.
class BertClassifier : public Module {
 public:
  BertClassifier(const BertConfig& cfg, int64_t num_classes, uint64_t seed);

  // ids [B, L], key_padding_mask bool [B, L] or undefined -> logits [B, num_classes].
  Tensor classify(const Tensor& ids, const Tensor& key_padding_mask = {}) const;
  // Mean cross-entropy of classify() against integer labels [B].
  Tensor loss(const Tensor& ids, const Tensor& labels, const Tensor& key_padding_mask = {}) const;
  // Copies every `encoder.*` parameter from a pre-trained model (a BertMLM); the pooler and the
  // classifier keep their fresh init. Throws if `pretrained` lacks one.
  void load_encoder(const Module& pretrained);

  void set_step(uint64_t step) { step_ = step; }
  int64_t num_classes() const { return classes_; }
  const BertConfig& config() const { return cfg_; }
  const BertEncoder& encoder() const { return *encoder_; }
  const ModelPart& part() const { return encoder_->part(); }

  static int64_t count_parameters(const BertConfig& cfg, int64_t num_classes);

 private:
  BertConfig cfg_;
  int64_t classes_;
  uint64_t seed_;
  uint64_t step_ = 0;
  std::shared_ptr<BertEncoder> encoder_;
  std::shared_ptr<Linear> pooler_, classifier_;
};

}  // namespace strata::models
