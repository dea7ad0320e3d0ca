#include "models/decoder_lm.h"

#include "core/error.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "models/tp_embedding.h"
#include "models/tp_lm_head.h"

namespace strata::models {

void DecoderConfig::validate() const {
  STRATA_CHECK(vocab > 0, "DecoderConfig: vocab must be positive, got ", vocab);
  STRATA_CHECK(d_model > 0, "DecoderConfig: d_model must be positive, got ", d_model);
  STRATA_CHECK(n_layers > 0, "DecoderConfig: n_layers must be positive, got ", n_layers);
  STRATA_CHECK(n_heads > 0 && d_model % n_heads == 0, "DecoderConfig: n_heads ", n_heads,
               " must be positive and divide d_model ", d_model);
  STRATA_CHECK(head_dim() % 2 == 0,
               "DecoderConfig: RoPE needs an even head dim, got d_model / n_heads = ", head_dim());
  STRATA_CHECK(n_kv_heads >= 0 && n_heads % kv_heads() == 0, "DecoderConfig: n_kv_heads ",
               n_kv_heads, " must divide n_heads ", n_heads);
  STRATA_CHECK(d_ff > 0, "DecoderConfig: d_ff must be positive, got ", d_ff);
  STRATA_CHECK(max_seq > 0, "DecoderConfig: max_seq must be positive, got ", max_seq);
  STRATA_CHECK(rope_base > 0 && norm_eps > 0 && init_std > 0,
               "DecoderConfig: rope_base, norm_eps and init_std must be positive");
  STRATA_CHECK(dropout >= 0 && dropout < 1, "DecoderConfig: dropout must be in [0, 1), got ",
               dropout);
  if (tp != nullptr) {
    const int n = tp->size();
    for (const auto& [name, value] : {std::pair<const char*, int64_t>{"n_heads", n_heads},
                                      {"n_kv_heads", kv_heads()},
                                      {"d_ff", d_ff},
                                      {"vocab", vocab}})
      STRATA_CHECK(value % n == 0, "DecoderConfig: ", name, " ", value,
                   " is not divisible by the tensor-parallel size ", n);
  }
}

namespace {

bool tp_active(const DecoderConfig& c) {
  return c.tp != nullptr && c.tp->size() > 1;
}

int64_t tp_size(const DecoderConfig& c) {
  return tp_active(c) ? c.tp->size() : 1;
}

// Dropout sites get disjoint Philox streams: the purpose in the low byte, the site above it.
RandomKey dropout_key(uint64_t seed, uint64_t step, uint32_t site) {
  return RandomKey{seed, uint32_t(RngStream::Dropout) | (site << 8), step, 0};
}

RandomKey with_site(RandomKey k, uint32_t site) {
  k.stream = uint32_t(RngStream::Dropout) | (site << 8);
  return k;
}

}  // namespace

DecoderBlock::DecoderBlock(const DecoderConfig& cfg, int64_t layer_index)
    : Module("DecoderBlock"), dropout_(cfg.dropout), index_(layer_index) {
  AttentionConfig a;
  a.d_model = cfg.d_model;
  a.n_heads = cfg.n_heads;
  a.n_kv_heads = cfg.kv_heads();
  a.causal = true;
  a.rope = true;
  a.rope_base = cfg.rope_base;
  a.init = a.out_init = Init::normal(cfg.init_std);
  a.tp = cfg.tp;
  FeedForwardConfig f;
  f.d_model = cfg.d_model;
  f.d_ff = cfg.d_ff;
  f.kind = FFNKind::SwiGLU;
  f.init = f.out_init = Init::normal(cfg.init_std);
  f.tp = cfg.tp;
  attn_norm_ = register_module("attn_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  attn_ = register_module("attn", std::make_shared<MultiHeadAttention>(a));
  ffn_norm_ = register_module("ffn_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  ffn_ = register_module("ffn", std::make_shared<FeedForward>(f));
}

Tensor DecoderBlock::forward(const Tensor& in, KVCache* cache, const RandomKey& dropout_key) const {
  const bool drop = dropout_ > 0 && is_training();
  // Mixed precision: the residual stream in its own dtype (f32 under bf16), the sublayers'
  // bf16 outputs widened into it before dropout and the sum.
  const Precision& p = precision();
  const Tensor x = p.residual_in(in);
  AttentionContext ctx;
  ctx.cache = cache;
  Tensor a = p.residual_in(attn_->forward(attn_norm_->forward(x), ctx));
  if (drop) a = dropout(a, dropout_, with_site(dropout_key, uint32_t(2 * index_ + 1)), true);
  Tensor h = x + a;
  Tensor f = p.residual_in(ffn_->forward(ffn_norm_->forward(h)));
  if (drop) f = dropout(f, dropout_, with_site(dropout_key, uint32_t(2 * index_ + 2)), true);
  return h + f;
}

DecoderLM::DecoderLM(const DecoderConfig& cfg, uint64_t seed, const ModelPart& part)
    : CausalLM("DecoderLM"), cfg_(cfg), seed_(seed) {
  cfg_.validate();
  part_ = part.resolved(cfg_.n_layers, "DecoderLM");
  const Init init = Init::normal(cfg_.init_std);
  // The whole model's registration order (embed, layers, norm, lm_head), so every part lists its
  // parameters in that order and Philox keys each by the same full name.
  const bool want_embed = part_.pre || (part_.post && cfg_.tie_embeddings);
  std::shared_ptr<VocabParallelEmbedding> tp_embed;
  if (want_embed && tp_active(cfg_)) {
    tp_embed = std::make_shared<VocabParallelEmbedding>(cfg_.vocab, cfg_.d_model, init, *cfg_.tp);
    embed_ = register_module("embed", tp_embed);
  } else if (want_embed) {
    embed_ = register_module("embed", std::make_shared<Embedding>(cfg_.vocab, cfg_.d_model, init));
  }
  layers_ = register_module("layers", std::make_shared<ModuleList<DecoderBlock>>(part_.begin));
  for (int64_t i = part_.begin; i < part_.end; ++i)
    layers_->push_back(std::make_shared<DecoderBlock>(cfg_, i));
  if (part_.post) {
    norm_ = register_module("norm", std::make_shared<RMSNorm>(cfg_.d_model, cfg_.norm_eps));
    if (tp_active(cfg_))
      lm_head_ = cfg_.tie_embeddings
                     ? std::make_shared<ParallelLMHead>(tp_embed)
                     : std::make_shared<ParallelLMHead>(cfg_.d_model, cfg_.vocab, init, *cfg_.tp);
    else
      lm_head_ = cfg_.tie_embeddings
                     ? std::make_shared<LMHead>(std::shared_ptr<const Embedding>(embed_))
                     : std::make_shared<LMHead>(cfg_.d_model, cfg_.vocab, init);
    register_module("lm_head", lm_head_);
  }
  init_parameters(seed);
  set_precision(cfg_.precision);
}

void DecoderLM::check_whole(const char* what) const {
  STRATA_CHECK(part_.whole(cfg_.n_layers), "DecoderLM::", what,
               ": needs the whole model, this holds blocks [", part_.begin, ", ", part_.end, ")",
               part_.pre ? " with the embedding" : "", part_.post ? " with the head" : "");
}

RandomKey DecoderLM::dropout_base() const {
  // Site 0 is the embedding; the blocks add their own sites (DecoderBlock::forward).
  RandomKey key = dropout_key(seed_, step_, 0);
  key.row_first = row_first_, key.row_stride = row_stride_;
  return key;
}

Tensor DecoderLM::embed_tokens(const Tensor& ids) const {
  STRATA_CHECK(part_.pre, "DecoderLM::embed_tokens: this part has no embedding");
  STRATA_CHECK(ids.dim() == 2 && (ids.dtype() == DType::i64 || ids.dtype() == DType::i32),
               "DecoderLM: expected integer ids [B, L], got ", shape_str(ids.shape()), " ",
               dtype_name(ids.dtype()));
  Tensor h = embed_->forward(ids);
  if (cfg_.dropout > 0 && is_training()) h = dropout(h, cfg_.dropout, dropout_base(), true);
  return h;
}

Tensor DecoderLM::run_blocks(Tensor h, ModelCache* cache) const {
  if (cache != nullptr) {
    check_whole("run_blocks with a cache");
    STRATA_CHECK(int64_t(cache->layers.size()) == cfg_.n_layers, "DecoderLM: cache has ",
                 cache->layers.size(), " layers, the model ", cfg_.n_layers);
  }
  const RandomKey key = dropout_base();
  for (int64_t i = part_.begin; i < part_.end; ++i)
    h = layer(i).forward(h, cache ? cache->layers[size_t(i)].get() : nullptr, key);
  return h;
}

Tensor DecoderLM::head_loss(const Tensor& h, const Tensor& targets, StageHits* hits) const {
  STRATA_CHECK(part_.post, "DecoderLM::head_loss: this part has no head");
  const Tensor local = lm_head_->local_logits(norm_->forward(h));
  if (hits != nullptr) *hits = count_hits(lm_head_->gather_logits(local), targets);
  return lm_head_->loss(local, targets);
}

Tensor DecoderLM::head_logits(const Tensor& h) const {
  STRATA_CHECK(part_.post, "DecoderLM::head_logits: this part has no head");
  return lm_head_->forward(norm_->forward(h));
}

Tensor DecoderLM::hidden(const Tensor& ids, ModelCache* cache) const {
  check_whole("hidden");
  return norm_->forward(run_blocks(embed_tokens(ids), cache));
}

Tensor DecoderLM::forward(const Tensor& ids) const {
  return lm_head_->forward(hidden(ids));
}

Tensor DecoderLM::forward_step(const Tensor& ids, ModelCache& cache) const {
  return lm_head_->forward(hidden(ids, &cache));
}

ModelCache DecoderLM::make_cache(int64_t batch, int64_t capacity) const {
  check_whole("make_cache");
  ModelCache c;
  for (int64_t i = 0; i < cfg_.n_layers; ++i)
    c.layers.push_back(std::make_unique<DenseKVCache>(
        batch, cfg_.kv_heads() / tp_size(cfg_), cfg_.head_dim(),
        capacity > 0 ? capacity : cfg_.max_seq, precision().compute_dtype(dtype())));
  return c;
}

Tensor DecoderLM::loss(const Tensor& ids, const Tensor& targets) const {
  check_whole("loss");
  STRATA_CHECK(targets.shape() == ids.shape(), "DecoderLM::loss: targets ",
               shape_str(targets.shape()), " must match ids ", shape_str(ids.shape()));
  return head_loss(run_blocks(embed_tokens(ids)), targets);
}

int64_t DecoderLM::num_non_embedding_parameters() const {
  check_whole("num_non_embedding_parameters");
  return num_parameters() - embed_->weight().numel();
}

int64_t DecoderLM::count_parameters(const DecoderConfig& c, bool include_embeddings) {
  const int64_t d = c.d_model, dh = c.head_dim();
  const int64_t attn = d * c.n_heads * dh + 2 * d * c.kv_heads() * dh + c.n_heads * dh * d;
  const int64_t ffn = 3 * d * c.d_ff;
  const int64_t per_layer = attn + ffn + 2 * d;
  int64_t n = c.n_layers * per_layer + d + (c.tie_embeddings ? 0 : c.vocab * d);
  if (include_embeddings) n += c.vocab * d;
  return n;
}

double DecoderLM::flops_per_token(const DecoderConfig& c, int64_t seq_len) {
  const double d = double(c.d_model), dh = double(c.head_dim());
  const double linear_per_layer =
      d * c.n_heads * dh + 2 * d * c.kv_heads() * dh + c.n_heads * dh * d + 3 * d * c.d_ff;
  const double n_matmul = c.n_layers * linear_per_layer + double(c.vocab) * d;
  const double attention =
      12.0 * c.n_layers * c.n_heads * dh * double(seq_len > 0 ? seq_len : c.max_seq);
  return 6.0 * n_matmul + attention;
}

double DecoderLM::flops_per_token(int64_t seq_len) const {
  return flops_per_token(cfg_, seq_len);
}

}  // namespace strata::models
