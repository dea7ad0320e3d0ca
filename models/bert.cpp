#include "models/bert.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "models/tp_embedding.h"
#include "models/tp_lm_head.h"

namespace strata::models {

void BertConfig::validate() const {
  STRATA_CHECK(vocab > 0, "BertConfig: vocab must be positive, got ", vocab);
  STRATA_CHECK(d_model > 0 && d_model % 2 == 0,
               "BertConfig: d_model must be positive and even (sin/cos channel pairs), got ",
               d_model);
  STRATA_CHECK(n_layers > 0, "BertConfig: n_layers must be positive, got ", n_layers);
  STRATA_CHECK(n_heads > 0 && d_model % n_heads == 0, "BertConfig: n_heads ", n_heads,
               " must be positive and divide d_model ", d_model);
  STRATA_CHECK(d_ff > 0 && d_ff % 2 == 0,
               "BertConfig: d_ff must be positive and even (the GLU halves it), got ", d_ff);
  STRATA_CHECK(max_seq > 0, "BertConfig: max_seq must be positive, got ", max_seq);
  STRATA_CHECK(norm_eps > 0 && init_std > 0, "BertConfig: norm_eps and init_std must be positive");
  STRATA_CHECK(pad_id < vocab, "BertConfig: pad_id ", pad_id, " is outside the vocab of ", vocab);
  STRATA_CHECK(dropout >= 0 && dropout < 1, "BertConfig: dropout must be in [0, 1), got ", dropout);
  if (tp != nullptr) {
    const int n = tp->size();
    for (const auto& [name, value] : {std::pair<const char*, int64_t>{"n_heads", n_heads},
                                      {"the GLU width d_ff / 2 =", glu_dim()},
                                      {"vocab", vocab}})
      STRATA_CHECK(value % n == 0, "BertConfig: ", name, " ", value,
                   " is not divisible by the tensor-parallel size ", n);
  }
}

std::vector<std::string> bert_preset_names() {
  return {"bert-tiny", "bert-small", "bert-c5"};
}

BertConfig bert_preset(const std::string& name, int64_t vocab) {
  BertConfig c;
  if (name == "bert-tiny") {
    c.vocab = 8192, c.d_model = 64, c.n_layers = 2, c.n_heads = 2, c.d_ff = 256;
  } else if (name == "bert-small") {
    c.vocab = 8192, c.d_model = 256, c.n_layers = 4, c.n_heads = 4, c.d_ff = 1024;
  } else if (name == "bert-c5") {
    c.vocab = 32768, c.d_model = 768, c.n_layers = 16, c.n_heads = 12, c.d_ff = 3072;
  } else {
    std::string known;
    for (const auto& n : bert_preset_names()) known += (known.empty() ? "" : ", ") + n;
    STRATA_CHECK(false, "bert_preset: unknown preset '", name, "', expected one of ", known);
  }
  c.max_seq = 128;
  if (vocab > 0) c.vocab = vocab;
  c.validate();
  return c;
}

namespace {

// Dropout sites get disjoint Philox streams: the purpose in the low byte, the site above it.
RandomKey dropout_key(uint64_t seed, uint64_t step) {
  return RandomKey{seed, uint32_t(RngStream::Dropout), step, 0};
}

RandomKey with_site(RandomKey k, uint32_t site) {
  k.stream = uint32_t(RngStream::Dropout) | (site << 8);
  return k;
}

Tensor sinusoid_table(int64_t positions, int64_t d) {
  std::vector<double> pe(size_t(positions * d));
  for (int64_t p = 0; p < positions; ++p)
    for (int64_t i = 0; i < d / 2; ++i) {
      const double angle = double(p) * std::exp(-double(2 * i) * std::log(10000.0) / double(d));
      pe[size_t(p * d + 2 * i)] = std::sin(angle);
      pe[size_t(p * d + 2 * i + 1)] = std::cos(angle);
    }
  return from_vector<double>(pe, {positions, d});
}

void check_ids(const Tensor& ids, int64_t max_seq, const char* who) {
  STRATA_CHECK(ids.dim() == 2 && (ids.dtype() == DType::i64 || ids.dtype() == DType::i32), who,
               ": expected integer ids [B, L], got ", shape_str(ids.shape()), " ",
               dtype_name(ids.dtype()));
  STRATA_CHECK(ids.size(1) <= max_seq, who, ": sequence length ", ids.size(1), " exceeds max_seq ",
               max_seq);
}

void check_mask(const Tensor& mask, const Tensor& ids, const char* who) {
  if (!mask.defined()) return;
  STRATA_CHECK(mask.dtype() == DType::b8 && mask.shape() == ids.shape(), who,
               ": key_padding_mask must be bool ", shape_str(ids.shape()), ", got ",
               shape_str(mask.shape()), " ", dtype_name(mask.dtype()));
}

std::vector<int64_t> as_i64(const Tensor& t) {
  return t.to(DType::i64).contiguous().to_vector<int64_t>();
}

}  // namespace

BertEmbeddings::BertEmbeddings(const BertConfig& cfg)
    : Module("BertEmbeddings"),
      pad_id_(cfg.pad_id),
      pos_scale_(register_parameter("pos_scale", {1},
                                    Init::constant(1.0 / std::sqrt(double(cfg.d_model))))) {
  const Init init = Init::normal(cfg.init_std);
  word_ = register_module(
      "word", cfg.tp != nullptr && cfg.tp->size() > 1
                  ? std::make_shared<VocabParallelEmbedding>(cfg.vocab, cfg.d_model, init, *cfg.tp)
                  : std::make_shared<Embedding>(cfg.vocab, cfg.d_model, init));
  norm_ = register_module("norm", std::make_shared<LayerNorm>(cfg.d_model, cfg.norm_eps, true));
  sinusoid_ = sinusoid_table(cfg.max_seq, cfg.d_model);
}

Tensor BertEmbeddings::forward(const Tensor& ids) const {
  Tensor e = word_->forward(ids);
  if (pad_id_ >= 0) {
    const auto v = as_i64(ids);
    // nn.Embedding(padding_idx): a pad lookup reads the row but sends it no gradient. The row
    // still learns through the tied MLM decoder, as in Cramming.
    if (std::find(v.begin(), v.end(), pad_id_) != v.end()) {
      const Tensor keep = ne(ids, scalar_tensor(double(pad_id_), ids.dtype())).unsqueeze(-1);
      e = where(keep, e, e.detach());
    }
  }
  const Tensor pe = sinusoid_.narrow(0, 0, ids.size(1)).to(e.dtype());
  return norm_->forward(e + pos_scale_ * pe);
}

BertLayer::BertLayer(const BertConfig& cfg, int64_t layer_index)
    : Module("BertLayer"), dropout_(cfg.dropout), index_(layer_index) {
  AttentionConfig a;
  a.d_model = cfg.d_model;
  a.n_heads = cfg.n_heads;
  a.causal = false;
  a.rope = false;
  a.bias = false;
  a.init = a.out_init = Init::normal(cfg.init_std);
  a.tp = cfg.tp;
  FeedForwardConfig f;
  f.d_model = cfg.d_model;
  f.d_ff = cfg.glu_dim();
  f.kind = FFNKind::GatedGelu;
  f.gelu_tanh = false;  // torch.nn.GELU(): the exact erf form
  f.bias = false;
  f.init = f.out_init = Init::normal(cfg.init_std);
  f.tp = cfg.tp;
  attn_norm_ =
      register_module("attn_norm", std::make_shared<LayerNorm>(cfg.d_model, cfg.norm_eps, true));
  attn_ = register_module("attn", std::make_shared<MultiHeadAttention>(a));
  ffn_norm_ =
      register_module("ffn_norm", std::make_shared<LayerNorm>(cfg.d_model, cfg.norm_eps, true));
  ffn_ = register_module("ffn", std::make_shared<FeedForward>(f));
}

Tensor BertLayer::forward(const Tensor& in, const Tensor& key_padding_mask,
                          const RandomKey& key) const {
  const bool drop = dropout_ > 0 && is_training();
  // Mixed precision: as DecoderBlock, the residual stream in its own dtype.
  const Precision& p = precision();
  const Tensor x = p.residual_in(in);
  AttentionContext ctx;
  ctx.key_padding_mask = key_padding_mask;
  Tensor a = p.residual_in(attn_->forward(attn_norm_->forward(x), ctx));
  if (drop) a = dropout(a, dropout_, with_site(key, uint32_t(2 * index_ + 1)), true);
  Tensor h = x + a;
  Tensor f = p.residual_in(ffn_->forward(ffn_norm_->forward(h)));
  if (drop) f = dropout(f, dropout_, with_site(key, uint32_t(2 * index_ + 2)), true);
  return h + f;
}

BertEncoder::BertEncoder(const BertConfig& cfg, const ModelPart& part)
    : Module("BertEncoder"), cfg_(cfg) {
  cfg_.validate();
  part_ = part.resolved(cfg_.n_layers, "BertEncoder");
  if (part_.pre) {
    embed_ = register_module("embed", std::make_shared<BertEmbeddings>(cfg_));
    word_ = embed_->word_ptr();
  } else if (part_.post) {
    // The replica of the word table the tied decoder reads, under the embeddings' name.
    auto embed = register_module("embed", std::make_shared<ModuleScope>("BertEmbeddings"));
    const Init init = Init::normal(cfg_.init_std);
    word_ = embed->add("word",
                       cfg_.tp != nullptr && cfg_.tp->size() > 1
                           ? std::shared_ptr<Embedding>(std::make_shared<VocabParallelEmbedding>(
                                 cfg_.vocab, cfg_.d_model, init, *cfg_.tp))
                           : std::make_shared<Embedding>(cfg_.vocab, cfg_.d_model, init));
  }
  layers_ = register_module("layers", std::make_shared<ModuleList<BertLayer>>(part_.begin));
  for (int64_t i = part_.begin; i < part_.end; ++i)
    layers_->push_back(std::make_shared<BertLayer>(cfg_, i));
  if (part_.post)
    final_norm_ = register_module("final_norm",
                                  std::make_shared<LayerNorm>(cfg_.d_model, cfg_.norm_eps, true));
}

const BertEmbeddings& BertEncoder::embed() const {
  STRATA_CHECK(embed_ != nullptr, "BertEncoder: this part has no embeddings");
  return *embed_;
}

Tensor BertEncoder::embed_tokens(const Tensor& ids, const RandomKey& key) const {
  STRATA_CHECK(part_.pre, "BertEncoder::embed_tokens: this part has no embeddings");
  check_ids(ids, cfg_.max_seq, "BertEncoder");
  Tensor h = embed_->forward(ids);
  if (cfg_.dropout > 0 && is_training()) h = dropout(h, cfg_.dropout, with_site(key, 0), true);
  return h;
}

Tensor BertEncoder::run_blocks(Tensor h, const Tensor& key_padding_mask,
                               const RandomKey& key) const {
  for (int64_t i = part_.begin; i < part_.end; ++i) h = layer(i).forward(h, key_padding_mask, key);
  return h;
}

Tensor BertEncoder::final_norm(const Tensor& h) const {
  STRATA_CHECK(part_.post, "BertEncoder::final_norm: this part has no final norm");
  return final_norm_->forward(h);
}

Tensor BertEncoder::forward(const Tensor& ids, const Tensor& key_padding_mask,
                            const RandomKey& key) const {
  STRATA_CHECK(part_.whole(cfg_.n_layers), "BertEncoder::forward: needs the whole encoder");
  check_ids(ids, cfg_.max_seq, "BertEncoder");
  check_mask(key_padding_mask, ids, "BertEncoder");
  return final_norm(run_blocks(embed_tokens(ids, key), key_padding_mask, key));
}

namespace {

// Cramming's init leaves nn.Embedding's padding row at zero (under tensor parallelism, on the
// rank that holds it).
void zero_pad_row(const BertEncoder& enc, int64_t pad_id) {
  if (pad_id < 0 || enc.word_ptr() == nullptr) return;
  NoGradGuard no_grad;
  Tensor w = enc.word_ptr()->weight();
  const int64_t row = pad_id - enc.sharding("embed.word.weight").offset();
  if (row >= 0 && row < w.size(0)) w.narrow(0, row, 1).zero_();
}

std::shared_ptr<LMHead> tied_decoder(std::shared_ptr<const Embedding> word) {
  if (auto parallel = std::dynamic_pointer_cast<const VocabParallelEmbedding>(word))
    if (parallel->tp().size() > 1) return std::make_shared<ParallelLMHead>(parallel);
  return std::make_shared<LMHead>(std::move(word));
}

}  // namespace

BertMLM::BertMLM(const BertConfig& cfg, uint64_t seed, const ModelPart& part)
    : Module("BertMLM"), cfg_(cfg), seed_(seed) {
  cfg_.validate();
  encoder_ = register_module("encoder", std::make_shared<BertEncoder>(cfg_, part));
  if (encoder_->part().post) {
    mlm_head_ = register_module(
        "mlm_head",
        std::make_shared<Linear>(cfg_.d_model, cfg_.d_model, false, Init::normal(cfg_.init_std)));
    decoder_ = register_module("decoder", tied_decoder(encoder_->word_ptr()));
  }
  init_parameters(seed);
  zero_pad_row(*encoder_, cfg_.pad_id);
  set_precision(cfg_.precision);
}

RandomKey BertMLM::dropout_base() const {
  RandomKey key = dropout_key(seed_, step_);
  key.row_first = row_first_, key.row_stride = row_stride_;
  return key;
}

Tensor BertMLM::forward(const Tensor& ids, const Tensor& key_padding_mask) const {
  return encoder_->forward(ids, key_padding_mask, dropout_base());
}

Tensor BertMLM::mlm_logits(const Tensor& hidden) const {
  return decoder_->forward(mlm_head_->forward(hidden));
}

MLMOutput BertMLM::mlm(const Tensor& ids, const Tensor& labels,
                       const Tensor& key_padding_mask) const {
  STRATA_CHECK(labels.shape() == ids.shape() &&
                   (labels.dtype() == DType::i64 || labels.dtype() == DType::i32),
               "BertMLM::mlm: labels must be integer ", shape_str(ids.shape()), ", got ",
               shape_str(labels.shape()), " ", dtype_name(labels.dtype()));
  return predict_masked(forward(ids, key_padding_mask), labels);
}

MLMOutput BertMLM::predict_masked(const Tensor& h, const Tensor& labels, StageHits* hits) const {
  STRATA_CHECK(decoder_ != nullptr, "BertMLM::predict_masked: this part has no MLM head");
  const auto lab = as_i64(labels);
  std::vector<int64_t> pos, tgt;
  for (size_t i = 0; i < lab.size(); ++i)
    if (lab[i] != -100) {
      STRATA_CHECK(lab[i] >= 0 && lab[i] < cfg_.vocab, "BertMLM::mlm: label ", lab[i],
                   " at flat position ", i, " is outside [0, ", cfg_.vocab, ") and not -100");
      pos.push_back(int64_t(i));
      tgt.push_back(lab[i]);
    }
  MLMOutput out;
  const int64_t M = int64_t(pos.size());
  out.positions = from_vector<int64_t>(pos, {M});
  out.targets = from_vector<int64_t>(tgt, {M});
  if (M == 0) {
    // Every parameter still gets a (zero) gradient, so gradient hooks and all-reduces that wait
    // for each parameter see the same set on every rank.
    const Tensor local = decoder_->local_logits(mlm_head_->forward(h.select(1, 0)));
    out.logits = zeros({0, local.size(-1)}, h.dtype());
    out.loss = sum(local) * 0.0;
    if (hits != nullptr) *hits = {};
    return out;
  }
  const Tensor rows =
      index_select(h.reshape({h.size(0) * h.size(1), cfg_.d_model}), 0, out.positions);
  out.logits = decoder_->local_logits(mlm_head_->forward(rows));
  out.loss = decoder_->loss(out.logits, out.targets);
  if (hits != nullptr) *hits = count_hits(decoder_->gather_logits(out.logits), out.targets);
  return out;
}

int64_t BertMLM::count_parameters(const BertConfig& c) {
  const int64_t d = c.d_model;
  const int64_t embed = c.vocab * d + 1 + 2 * d;
  const int64_t per_layer = 4 * d * d + d * c.d_ff + c.glu_dim() * d + 4 * d;
  return embed + c.n_layers * per_layer + 2 * d + d * d;
}

double BertMLM::flops_per_token(const BertConfig& c, int64_t seq_len, double mask_fraction) {
  const double d = double(c.d_model);
  const double encoder = c.n_layers * (4 * d * d + d * c.d_ff + double(c.glu_dim()) * d);
  const double head = d * d + double(c.vocab) * d;
  return 6.0 * (encoder + mask_fraction * head) + 12.0 * c.n_layers * d * double(seq_len);
}

BertClassifier::BertClassifier(const BertConfig& cfg, int64_t num_classes, uint64_t seed)
    : Module("BertClassifier"), cfg_(cfg), classes_(num_classes), seed_(seed) {
  cfg_.validate();
  STRATA_CHECK(num_classes > 0, "BertClassifier: num_classes must be positive, got ", num_classes);
  encoder_ = register_module("encoder", std::make_shared<BertEncoder>(cfg_));
  pooler_ = register_module("pooler", std::make_shared<Linear>(cfg_.d_model, cfg_.d_model, true,
                                                               Init::normal(cfg_.init_std)));
  classifier_ = register_module(
      "classifier",
      std::make_shared<Linear>(cfg_.d_model, num_classes, true, Init::normal(cfg_.init_std)));
  init_parameters(seed);
  zero_pad_row(*encoder_, cfg_.pad_id);
  set_precision(cfg_.precision);
}

Tensor BertClassifier::classify(const Tensor& ids, const Tensor& key_padding_mask) const {
  const RandomKey key = dropout_key(seed_, step_);
  const Tensor h = encoder_->forward(ids, key_padding_mask, key);
  Tensor pooled = tanh(pooler_->forward(h.select(1, 0)));
  if (cfg_.dropout > 0 && is_training())
    pooled = dropout(pooled, cfg_.dropout, with_site(key, uint32_t(2 * cfg_.n_layers + 1)), true);
  // The logits in f32 for the loss (a bf16 matmul output under bf16 compute).
  return loss_input(classifier_->forward(pooled));
}

Tensor BertClassifier::loss(const Tensor& ids, const Tensor& labels,
                            const Tensor& key_padding_mask) const {
  STRATA_CHECK(labels.dim() == 1 && labels.size(0) == ids.size(0),
               "BertClassifier::loss: labels must be [", ids.size(0), "], got ",
               shape_str(labels.shape()));
  return cross_entropy(classify(ids, key_padding_mask), labels);
}

void BertClassifier::load_encoder(const Module& pretrained) {
  for (const auto& [name, t] : named_parameters()) {
    if (name.rfind("encoder.", 0) != 0) continue;
    STRATA_CHECK(pretrained.has_parameter(name), "BertClassifier::load_encoder: the pre-trained ",
                 pretrained.type_name(), " has no parameter ", name);
    load_parameter(name, pretrained.parameter(name));
  }
}

int64_t BertClassifier::count_parameters(const BertConfig& c, int64_t num_classes) {
  const int64_t d = c.d_model;
  return BertMLM::count_parameters(c) - d * d + (d * d + d) + (d * num_classes + num_classes);
}

}  // namespace strata::models
