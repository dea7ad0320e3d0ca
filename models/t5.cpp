#include "models/t5.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "models/tp_embedding.h"
#include "models/tp_lm_head.h"

namespace strata::models {

void T5Config::validate() const {
  STRATA_CHECK(vocab > 0, "T5Config: vocab must be positive, got ", vocab);
  STRATA_CHECK(d_model > 0 && d_kv > 0 && n_heads > 0 && d_ff > 0,
               "T5Config: d_model, d_kv, n_heads and d_ff must be positive, got ", d_model, ", ",
               d_kv, ", ", n_heads, ", ", d_ff);
  STRATA_CHECK(n_layers > 0 && n_decoder_layers >= 0, "T5Config: n_layers must be positive, got ",
               n_layers, " (n_decoder_layers ", n_decoder_layers, ")");
  STRATA_CHECK(norm_eps > 0, "T5Config: norm_eps must be positive, got ", norm_eps);
  STRATA_CHECK(relative_buckets >= 4 && relative_buckets % 2 == 0,
               "T5Config: relative_buckets must be even and >= 4, got ", relative_buckets);
  STRATA_CHECK(relative_max_distance > relative_buckets / 2,
               "T5Config: relative_max_distance must exceed relative_buckets / 2 (the largest "
               "exact offset), got ",
               relative_max_distance);
  STRATA_CHECK(dropout >= 0 && dropout < 1, "T5Config: dropout must be in [0, 1), got ", dropout);
  for (const auto& [name, id] :
       {std::pair<const char*, int64_t>{"decoder_start_id", decoder_start_id},
        {"pad_id", pad_id},
        {"eos_id", eos_id}})
    STRATA_CHECK(id >= 0 && id < vocab, "T5Config: ", name, " ", id, " is outside the vocab [0, ",
                 vocab, ")");
  if (tp != nullptr) {
    const int n = tp->size();
    for (const auto& [name, value] :
         {std::pair<const char*, int64_t>{"n_heads", n_heads}, {"d_ff", d_ff}, {"vocab", vocab}})
      STRATA_CHECK(value % n == 0, "T5Config: ", name, " ", value,
                   " is not divisible by the tensor-parallel size ", n);
  }
}

std::vector<std::string> t5_preset_names() {
  return {"t5-tiny", "t5-small", "t5-base"};
}

T5Config t5_preset(const std::string& name) {
  T5Config c;  // the defaults are nanoT5's t5-v1_1-base
  if (name == "t5-base") return c;
  if (name == "t5-tiny") {
    c.vocab = 8192;
    c.d_model = 64;
    c.d_kv = 16;
    c.n_heads = 4;
    c.d_ff = 128;
    c.n_layers = 2;
    return c;
  }
  if (name == "t5-small") {
    c.vocab = 8192;
    c.d_model = 256;
    c.d_kv = 64;
    c.n_heads = 4;
    c.d_ff = 1024;
    c.n_layers = 4;
    return c;
  }
  std::string names;
  for (const auto& n : t5_preset_names()) names += (names.empty() ? "" : ", ") + n;
  STRATA_CHECK(false, "t5_preset: unknown preset '", name, "'; known: ", names);
  return c;
}

namespace {

// The inits of ALGORITHMS.md 1.1 (HF's T5PreTrainedModel._init_weights with factor 1).
AttentionConfig attention_config(const T5Config& c, bool causal) {
  AttentionConfig a;
  a.d_model = c.d_model;
  a.n_heads = c.n_heads;
  a.head_dim = c.d_kv;
  a.causal = causal;
  a.scale = 1.0;  // unscaled: 1/sqrt(d_kv) is folded into W_q's init
  a.bias = false;
  a.init = Init::normal(std::pow(double(c.d_model), -0.5));  // W_k, W_v
  a.q_init = Init::normal(std::pow(double(c.d_model) * double(c.d_kv), -0.5));
  a.out_init = Init::normal(std::pow(double(c.inner_dim()), -0.5));
  a.tp = c.tp;
  return a;
}

FeedForwardConfig ffn_config(const T5Config& c) {
  FeedForwardConfig f;
  f.d_model = c.d_model;
  f.d_ff = c.d_ff;
  f.kind = FFNKind::GatedGelu;
  f.gelu_tanh = true;  // HF's gelu_new
  f.bias = false;
  f.init = Init::normal(std::pow(double(c.d_model), -0.5));   // wi_0, wi_1
  f.out_init = Init::normal(std::pow(double(c.d_ff), -0.5));  // wo
  f.tp = c.tp;
  return f;
}

std::shared_ptr<T5RelativeBias> make_rel_bias(const T5Config& c, bool bidirectional) {
  return std::make_shared<T5RelativeBias>(c.relative_buckets, c.relative_max_distance, c.n_heads,
                                          bidirectional,
                                          Init::normal(std::pow(double(c.d_model), -0.5)), c.tp);
}

// Dropout sites get disjoint Philox streams: the purpose in the low byte, the site above it. A
// stack's key carries its base site (stack << 16); blocks add 1 + 3 * index + sublayer.
constexpr uint32_t kFinalSite = 0xFFFF;

RandomKey at_site(RandomKey k, uint32_t offset) {
  const uint32_t site = (k.stream >> 8) + offset;
  k.stream = uint32_t(RngStream::Dropout) | (site << 8);
  return k;
}

Tensor maybe_dropout(const Tensor& x, double p, bool training, const RandomKey& key) {
  return p > 0 && training ? dropout(x, p, key, true) : x;
}

void check_ids(const Tensor& ids, const char* what) {
  STRATA_CHECK(ids.dim() == 2 && (ids.dtype() == DType::i64 || ids.dtype() == DType::i32),
               "T5Model: expected integer ", what, " [B, L], got ", shape_str(ids.shape()), " ",
               dtype_name(ids.dtype()));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Blocks

T5EncoderBlock::T5EncoderBlock(const T5Config& cfg, int64_t index, bool owns_bias)
    : Module("T5EncoderBlock"), dropout_(cfg.dropout), index_(index) {
  attn_norm_ = register_module("attn_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  attn_ =
      register_module("attn", std::make_shared<MultiHeadAttention>(attention_config(cfg, false)));
  if (owns_bias) rel_bias_ = register_module("rel_bias", make_rel_bias(cfg, true));
  ffn_norm_ = register_module("ffn_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  ffn_ = register_module("ffn", std::make_shared<FeedForward>(ffn_config(cfg)));
}

Tensor T5EncoderBlock::forward(const Tensor& in, const Tensor& bias, const Tensor& mask,
                               const RandomKey& key) const {
  const uint32_t site = uint32_t(1 + 3 * index_);
  // Mixed precision: as DecoderBlock, the residual stream in its own dtype.
  const Precision& p = precision();
  const Tensor x = p.residual_in(in);
  AttentionContext ctx;
  ctx.bias = bias;
  ctx.key_padding_mask = mask;
  Tensor h = x + maybe_dropout(p.residual_in(attn_->forward(attn_norm_->forward(x), ctx)), dropout_,
                               is_training(), at_site(key, site));
  return h + maybe_dropout(p.residual_in(ffn_->forward(ffn_norm_->forward(h))), dropout_,
                           is_training(), at_site(key, site + 1));
}

T5DecoderBlock::T5DecoderBlock(const T5Config& cfg, int64_t index, bool owns_bias)
    : Module("T5DecoderBlock"), dropout_(cfg.dropout), index_(index) {
  self_attn_norm_ =
      register_module("self_attn_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  self_attn_ = register_module("self_attn",
                               std::make_shared<MultiHeadAttention>(attention_config(cfg, true)));
  if (owns_bias) rel_bias_ = register_module("rel_bias", make_rel_bias(cfg, false));
  cross_attn_norm_ =
      register_module("cross_attn_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  cross_attn_ = register_module("cross_attn",
                                std::make_shared<MultiHeadAttention>(attention_config(cfg, false)));
  ffn_norm_ = register_module("ffn_norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
  ffn_ = register_module("ffn", std::make_shared<FeedForward>(ffn_config(cfg)));
}

T5CrossKV T5DecoderBlock::project_memory(const Tensor& memory) const {
  const auto& c = cross_attn_->config();
  const int64_t B = memory.size(0), Ls = memory.size(1), H = cross_attn_->local_heads();
  const Tensor in = cross_attn_->enter_tp(memory);
  T5CrossKV kv;
  kv.k = cross_attn_->k_proj().forward(in).view({B, Ls, H, c.head_dim}).transpose(1, 2);
  kv.v = cross_attn_->v_proj().forward(in).view({B, Ls, H, c.head_dim}).transpose(1, 2);
  return kv;
}

Tensor T5DecoderBlock::forward(const Tensor& in, const Tensor& self_bias, const Tensor& memory,
                               const Tensor& memory_mask, KVCache* cache, const T5CrossKV* cross,
                               const RandomKey& key) const {
  const uint32_t site = uint32_t(1 + 3 * index_);
  // Mixed precision: as DecoderBlock, the residual stream in its own dtype.
  const Precision& p = precision();
  const Tensor x = p.residual_in(in);
  AttentionContext self_ctx;
  self_ctx.bias = self_bias;
  self_ctx.cache = cache;
  Tensor h =
      x + maybe_dropout(p.residual_in(self_attn_->forward(self_attn_norm_->forward(x), self_ctx)),
                        dropout_, is_training(), at_site(key, site));

  // Cross-attention: no position bias, the encoder's padding mask.
  const Tensor y = cross_attn_norm_->forward(h);
  AttentionContext cross_ctx;
  cross_ctx.key_padding_mask = memory_mask;
  Tensor c;
  if (cross != nullptr) {
    const auto& cfg = cross_attn_->config();
    MultiHeadAttention::QKV qkv;
    qkv.q = cross_attn_->q_proj()
                .forward(cross_attn_->enter_tp(y))
                .view({y.size(0), y.size(1), cross_attn_->local_heads(), cfg.head_dim})
                .transpose(1, 2);
    qkv.k = cross->k;
    qkv.v = cross->v;
    c = cross_attn_->attend(qkv, cross_ctx);
  } else {
    cross_ctx.memory = memory;
    c = cross_attn_->forward(y, cross_ctx);
  }
  h = h + maybe_dropout(p.residual_in(c), dropout_, is_training(), at_site(key, site + 1));
  return h + maybe_dropout(p.residual_in(ffn_->forward(ffn_norm_->forward(h))), dropout_,
                           is_training(), at_site(key, site + 2));
}

// ---------------------------------------------------------------------------------------------
// Stacks

T5Encoder::T5Encoder(const T5Config& cfg, int64_t begin, int64_t end, bool with_norm)
    : Module("T5Encoder"), cfg_(cfg), begin_(begin), end_(end < 0 ? cfg.n_layers : end) {
  layers_ = register_module("layers", std::make_shared<ModuleList<T5EncoderBlock>>(begin_));
  for (int64_t i = begin_; i < end_; ++i)
    layers_->push_back(
        std::make_shared<T5EncoderBlock>(cfg, i, i == 0 || !cfg.share_position_bias));
  if (with_norm)
    norm_ = register_module("norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
}

Tensor T5Encoder::run_blocks(Tensor h, Tensor& shared_bias, const Tensor& mask,
                             const RandomKey& key) const {
  const int64_t L = h.size(1);
  for (int64_t i = begin_; i < end_; ++i) {
    const T5EncoderBlock& block = layer(i);
    const Tensor bias = block.rel_bias() ? block.rel_bias()->forward(L, L) : shared_bias;
    if (!shared_bias.defined()) shared_bias = bias;
    h = block.forward(h, bias, mask, key);
  }
  return h;
}

Tensor T5Encoder::finish(const Tensor& h, const RandomKey& key) const {
  STRATA_CHECK(norm_ != nullptr, "T5Encoder::finish: this part has no final norm");
  return maybe_dropout(norm_->forward(h), cfg_.dropout, is_training(), at_site(key, kFinalSite));
}

Tensor T5Encoder::forward(const Tensor& x, const Tensor& mask, const RandomKey& key) const {
  STRATA_CHECK(begin_ == 0 && end_ == cfg_.n_layers, "T5Encoder::forward: needs the whole stack");
  Tensor shared_bias;
  return finish(run_blocks(x, shared_bias, mask, key), key);
}

T5Decoder::T5Decoder(const T5Config& cfg, int64_t begin, int64_t end, bool with_norm)
    : Module("T5Decoder"), cfg_(cfg), begin_(begin), end_(end < 0 ? cfg.decoder_layers() : end) {
  layers_ = register_module("layers", std::make_shared<ModuleList<T5DecoderBlock>>(begin_));
  for (int64_t i = begin_; i < end_; ++i)
    layers_->push_back(
        std::make_shared<T5DecoderBlock>(cfg, i, i == 0 || !cfg.share_position_bias));
  if (with_norm)
    norm_ = register_module("norm", std::make_shared<RMSNorm>(cfg.d_model, cfg.norm_eps));
}

Tensor T5Decoder::run(Tensor h, Tensor& shared_bias, const Tensor& memory,
                      const Tensor& memory_mask, ModelCache* caches,
                      const std::vector<T5CrossKV>* cross, const RandomKey& key) const {
  const int64_t t = h.size(1);
  const int64_t offset = caches != nullptr ? caches->positions() : 0;
  for (int64_t i = begin_; i < end_; ++i) {
    const T5DecoderBlock& block = layer(i);
    const Tensor bias =
        block.rel_bias() ? block.rel_bias()->forward(t, offset + t, offset) : shared_bias;
    if (!shared_bias.defined()) shared_bias = bias;
    h = block.forward(h, bias, memory, memory_mask,
                      caches ? caches->layers[size_t(i)].get() : nullptr,
                      cross ? &(*cross)[size_t(i)] : nullptr, key);
  }
  return h;
}

Tensor T5Decoder::run_blocks(Tensor h, Tensor& shared_bias, const Tensor& memory,
                             const Tensor& memory_mask, const RandomKey& key) const {
  return run(std::move(h), shared_bias, memory, memory_mask, nullptr, nullptr, key);
}

Tensor T5Decoder::finish(const Tensor& h, const RandomKey& key) const {
  STRATA_CHECK(norm_ != nullptr, "T5Decoder::finish: this part has no final norm");
  return maybe_dropout(norm_->forward(h), cfg_.dropout, is_training(), at_site(key, kFinalSite));
}

Tensor T5Decoder::forward(const Tensor& x, const Tensor& memory, const Tensor& memory_mask,
                          ModelCache* caches, const std::vector<T5CrossKV>* cross,
                          const RandomKey& key) const {
  const int64_t n = cfg_.decoder_layers();
  STRATA_CHECK(begin_ == 0 && end_ == n, "T5Decoder::forward: needs the whole stack");
  if (caches != nullptr)
    STRATA_CHECK(int64_t(caches->layers.size()) == n, "T5Decoder: cache has ",
                 caches->layers.size(), " layers, the decoder ", n);
  if (cross != nullptr)
    STRATA_CHECK(int64_t(cross->size()) == n, "T5Decoder: ", cross->size(),
                 " cross-attention key/value sets for ", n, " layers");
  Tensor shared_bias;
  return finish(run(x, shared_bias, memory, memory_mask, caches, cross, key), key);
}

// ---------------------------------------------------------------------------------------------
// Model

T5Model::T5Model(const T5Config& cfg, std::optional<uint64_t> seed)
    : T5Model(cfg, seed, ModelPart{}) {}

T5Model::T5Model(const T5Config& cfg, std::optional<uint64_t> seed, const ModelPart& part)
    : Module("T5Model"), cfg_(cfg), seed_(seed.value_or(0)) {
  cfg_.validate();
  part_ = part.resolved(num_blocks(cfg_), "T5Model");
  const int64_t n = cfg_.n_layers, begin = part_.begin, end = part_.end;
  const bool parallel = cfg.tp != nullptr && cfg.tp->size() > 1;
  // The first part embeds both stacks' inputs, so the table lives in one part only.
  if (part_.pre)
    shared_ = register_module(
        "shared", parallel
                      ? std::make_shared<VocabParallelEmbedding>(cfg.vocab, cfg.d_model,
                                                                 Init::normal(1.0), *cfg.tp)
                      : std::make_shared<Embedding>(cfg.vocab, cfg.d_model, Init::normal(1.0)));
  if (begin < n)
    encoder_ = register_module(
        "encoder", std::make_shared<T5Encoder>(cfg_, begin, std::min(end, n), end >= n));
  if (end > n)
    decoder_ = register_module(
        "decoder", std::make_shared<T5Decoder>(cfg_, std::max(begin, n) - n, end - n, part_.post));
  // Untied (T5 v1.1), so no d_model^-0.5 rescaling of the decoder output either.
  if (part_.post)
    lm_head_ = register_module(
        "lm_head", parallel ? std::make_shared<ParallelLMHead>(cfg.d_model, cfg.vocab,
                                                               Init::normal(1.0), *cfg.tp)
                            : std::make_shared<LMHead>(cfg.d_model, cfg.vocab, Init::normal(1.0)));
  if (seed) init_parameters(*seed);
  set_precision(cfg_.precision);
}

void T5Model::check_whole(const char* what) const {
  STRATA_CHECK(part_.whole(num_blocks(cfg_)), "T5Model::", what,
               ": needs the whole model, this holds blocks [", part_.begin, ", ", part_.end, ")");
}

const T5Encoder& T5Model::encoder() const {
  STRATA_CHECK(encoder_ != nullptr, "T5Model: this part holds no encoder block");
  return *encoder_;
}

const T5Decoder& T5Model::decoder() const {
  STRATA_CHECK(decoder_ != nullptr, "T5Model: this part holds no decoder block");
  return *decoder_;
}

Tensor T5Model::embed(const Tensor& ids, uint32_t stack) const {
  STRATA_CHECK(shared_ != nullptr, "T5Model::embed: this part has no embedding");
  return maybe_dropout(shared_->forward(ids), cfg_.dropout, is_training(),
                       at_site(dropout_key(stack), 0));
}

Tensor T5Model::head_loss(const Tensor& decoder_out, const Tensor& labels, StageHits* hits) const {
  STRATA_CHECK(lm_head_ != nullptr, "T5Model::head_loss: this part has no head");
  const Tensor local = lm_head_->local_logits(decoder_out);
  if (hits != nullptr) *hits = count_hits(lm_head_->gather_logits(local), labels);
  return lm_head_->loss(local, labels);
}

Tensor T5Model::head_logits(const Tensor& decoder_out) const {
  STRATA_CHECK(lm_head_ != nullptr, "T5Model::head_logits: this part has no head");
  return lm_head_->gather_logits(lm_head_->local_logits(decoder_out));
}

RandomKey T5Model::dropout_key(uint32_t stack) const {
  return RandomKey{seed_,      uint32_t(RngStream::Dropout) | ((stack << 16) << 8),
                   step_,      0,
                   row_first_, row_stride_};
}

Tensor T5Model::bool_mask(const Tensor& encoder_mask, int64_t batch, int64_t len) const {
  if (!encoder_mask.defined()) return {};
  STRATA_CHECK(encoder_mask.shape() == Shape({batch, len}), "T5Model: encoder_mask ",
               shape_str(encoder_mask.shape()), " must be [", batch, ", ", len, "]");
  if (encoder_mask.dtype() == DType::b8) return encoder_mask;
  STRATA_CHECK(!is_floating(encoder_mask.dtype()),
               "T5Model: encoder_mask must be bool or integer (nonzero = real token), got ",
               dtype_name(encoder_mask.dtype()));
  const Tensor m = encoder_mask.to(DType::i64);
  return ne(m, zeros_like(m));
}

Tensor T5Model::encode(const Tensor& input_ids, const Tensor& encoder_mask) const {
  check_whole("encode");
  check_ids(input_ids, "input ids");
  return encoder_->forward(embed(input_ids, 0),
                           bool_mask(encoder_mask, input_ids.size(0), input_ids.size(1)),
                           dropout_key(0));
}

Tensor T5Model::decode(const Tensor& decoder_input_ids, const Tensor& encoder_out,
                       const Tensor& encoder_mask) const {
  return lm_head_->forward(decode_hidden(decoder_input_ids, encoder_out, encoder_mask));
}

Tensor T5Model::decode_hidden(const Tensor& decoder_input_ids, const Tensor& encoder_out,
                              const Tensor& encoder_mask) const {
  check_whole("decode");
  check_ids(decoder_input_ids, "decoder input ids");
  STRATA_CHECK(encoder_out.dim() == 3 && encoder_out.size(0) == decoder_input_ids.size(0) &&
                   encoder_out.size(2) == cfg_.d_model,
               "T5Model::decode: encoder output ", shape_str(encoder_out.shape()), " must be [",
               decoder_input_ids.size(0), ", Ls, ", cfg_.d_model, "]");
  const Tensor mask = bool_mask(encoder_mask, encoder_out.size(0), encoder_out.size(1));
  return decoder_->forward(embed(decoder_input_ids, 1), encoder_out, mask, nullptr, nullptr,
                           dropout_key(1));
}

Tensor T5Model::forward(const Tensor& input_ids, const Tensor& decoder_input_ids,
                        const Tensor& encoder_mask) const {
  return decode(decoder_input_ids, encode(input_ids, encoder_mask), encoder_mask);
}

Tensor T5Model::shift_right(const Tensor& labels, int64_t decoder_start_id, int64_t pad_id) {
  check_ids(labels, "labels");
  const int64_t B = labels.size(0), L = labels.size(1);
  const auto in = labels.to(DType::i64).contiguous().to_vector<int64_t>();
  std::vector<int64_t> out(in.size());
  for (int64_t b = 0; b < B; ++b) {
    out[size_t(b * L)] = decoder_start_id;
    for (int64_t j = 1; j < L; ++j) {
      const int64_t v = in[size_t(b * L + j - 1)];
      out[size_t(b * L + j)] = v == -100 ? pad_id : v;
    }
  }
  return from_vector<int64_t>(out, {B, L});
}

Tensor T5Model::loss(const Tensor& input_ids, const Tensor& labels,
                     const Tensor& encoder_mask) const {
  const Tensor dec = shift_right(labels, cfg_.decoder_start_id, cfg_.pad_id);
  return head_loss(decode_hidden(dec, encode(input_ids, encoder_mask), encoder_mask), labels);
}

T5DecodeState T5Model::start_decoding(const Tensor& encoder_out, const Tensor& encoder_mask,
                                      int64_t capacity) const {
  STRATA_CHECK(encoder_out.dim() == 3 && encoder_out.size(2) == cfg_.d_model,
               "T5Model::start_decoding: encoder output ", shape_str(encoder_out.shape()),
               " must be [B, Ls, ", cfg_.d_model, "]");
  check_whole("start_decoding");
  STRATA_CHECK(capacity > 0, "T5Model::start_decoding: capacity must be positive, got ", capacity);
  NoGradGuard no_grad;
  const int64_t B = encoder_out.size(0);
  T5DecodeState s;
  s.memory = encoder_out.detach();
  s.memory_mask = bool_mask(encoder_mask, B, encoder_out.size(1));
  for (int64_t i = 0; i < cfg_.decoder_layers(); ++i) {
    s.self.layers.push_back(
        std::make_unique<DenseKVCache>(B, decoder_->layer(i).self_attn().local_heads(), cfg_.d_kv,
                                       capacity, precision().compute_dtype(dtype())));
    s.cross.push_back(decoder_->layer(i).project_memory(s.memory));
  }
  return s;
}

Tensor T5Model::decode_step(const Tensor& ids, T5DecodeState& state) const {
  check_whole("decode_step");
  check_ids(ids, "decoder ids");
  NoGradGuard no_grad;
  return lm_head_->forward(decoder_->forward(embed(ids, 1), state.memory, state.memory_mask,
                                             &state.self, &state.cross, dropout_key(1)));
}

Tensor T5Model::generate(const Tensor& input_ids, const Tensor& encoder_mask,
                         const T5GenerateOptions& opt) {
  check_ids(input_ids, "input ids");
  STRATA_CHECK(opt.max_new_tokens >= 0, "T5Model::generate: max_new_tokens must be >= 0, got ",
               opt.max_new_tokens);
  NoGradGuard no_grad;
  EvalModeGuard eval(*this);
  const int64_t B = input_ids.size(0), V = cfg_.vocab;
  const Tensor memory = encode(input_ids, encoder_mask);
  std::vector<std::vector<int64_t>> rows(size_t(B), std::vector<int64_t>{cfg_.decoder_start_id});
  std::vector<bool> done(size_t(B), false);
  T5DecodeState state;
  if (opt.use_cache) state = start_decoding(memory, encoder_mask, opt.max_new_tokens + 1);
  auto as_tensor = [&](int64_t from) {
    std::vector<int64_t> ids;
    for (const auto& r : rows) ids.insert(ids.end(), r.begin() + from, r.end());
    return from_vector<int64_t>(ids, {B, int64_t(rows[0].size()) - from});
  };
  for (int64_t step = 0; step < opt.max_new_tokens; ++step) {
    const int64_t cur = int64_t(rows[0].size());
    const Tensor logits = opt.use_cache ? decode_step(as_tensor(cur - 1), state)
                                        : decode(as_tensor(0), memory, encoder_mask);
    const auto last =
        logits.select(1, logits.size(1) - 1).to(DType::f64).contiguous().to_vector<double>();
    bool all_done = true;
    for (int64_t b = 0; b < B; ++b) {
      int64_t tok = cfg_.pad_id;
      if (!done[size_t(b)]) {
        const auto row = last.begin() + b * V;
        tok = int64_t(std::max_element(row, row + V) - row);  // first maximum
        if (opt.stop_at_eos && tok == cfg_.eos_id) done[size_t(b)] = true;
      }
      rows[size_t(b)].push_back(tok);
      all_done = all_done && done[size_t(b)];
    }
    if (opt.stop_at_eos && all_done) break;
  }
  return as_tensor(0);
}

// ---------------------------------------------------------------------------------------------
// Counts

int64_t T5Model::count_parameters(const T5Config& c) {
  const int64_t d = c.d_model, inner = c.inner_dim();
  const int64_t attn = 4 * d * inner, ffn = 3 * d * c.d_ff, table = c.relative_buckets * c.n_heads;
  const int64_t enc_tables = c.share_position_bias ? 1 : c.n_layers;
  const int64_t dec_tables = c.share_position_bias ? 1 : c.decoder_layers();
  const int64_t encoder = c.n_layers * (attn + ffn + 2 * d) + enc_tables * table + d;
  const int64_t decoder = c.decoder_layers() * (2 * attn + ffn + 3 * d) + dec_tables * table + d;
  return 2 * c.vocab * d + encoder + decoder;
}

double T5Model::flops_per_example(const T5Config& c, int64_t enc_len, int64_t dec_len) {
  const double d = double(c.d_model), inner = double(c.inner_dim()), f = double(c.d_ff);
  const double Le = double(c.n_layers), Ld = double(c.decoder_layers());
  const double Ls = double(enc_len), Lt = double(dec_len);
  // Weights each token's matmuls read: encoder blocks per input token; decoder blocks (self
  // q/k/v/o, cross q/o, FFN) and the LM head per target token; cross k/v per input token.
  const double per_enc_token = Le * (4 * d * inner + 3 * d * f) + Ld * 2 * d * inner;
  const double per_dec_token = Ld * (6 * d * inner + 3 * d * f) + double(c.vocab) * d;
  // QK^T and AV, 2 FLOPs per multiply-add, x3 for the backward, over full (unmasked) lengths.
  const double attention = 12 * inner * (Le * Ls * Ls + Ld * Lt * Lt + Ld * Lt * Ls);
  return 6 * (Ls * per_enc_token + Lt * per_dec_token) + attention;
}

}  // namespace strata::models
