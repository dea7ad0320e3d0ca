#include "models/pipeline_stage_t5.h"

#include "core/error.h"
#include "core/ops.h"
#include "models/tp_embedding.h"
#include "models/tp_lm_head.h"

namespace strata::models {

namespace {

// T5Model's dropout sites (t5.cpp): a stack's key carries its base site (stack << 16); the
// embedding is site 0 of its stack, the final norm kFinalSite, the blocks add their own.
constexpr uint32_t kFinalSite = 0xFFFF;

RandomKey at_site(RandomKey k, uint32_t offset) {
  const uint32_t site = (k.stream >> 8) + offset;
  k.stream = uint32_t(RngStream::Dropout) | (site << 8);
  return k;
}

Tensor maybe_dropout(const Tensor& x, double p, bool training, const RandomKey& key) {
  return p > 0 && training ? dropout(x, p, key, true) : x;
}

// T5Model::bool_mask: bool passes, integers become nonzero = real token.
Tensor bool_mask(const Tensor& mask) {
  if (!mask.defined() || mask.dtype() == DType::b8) return mask;
  const Tensor m = mask.to(DType::i64);
  return ne(m, zeros_like(m));
}

}  // namespace

T5Stage::T5Stage(const T5Config& cfg, uint64_t seed, const StageLayout& layout, int stage)
    : Module("T5Stage"), cfg_(cfg), seed_(seed), layout_(layout), stage_(stage) {
  cfg_.validate();
  STRATA_CHECK(layout_.blocks() == num_blocks(cfg_), "T5Stage: the layout ", layout_.str(),
               " covers ", layout_.blocks(), " blocks but the model has ", cfg_.n_layers,
               " encoder + ", cfg_.decoder_layers(), " decoder blocks");
  STRATA_CHECK(stage >= 0 && stage < layout_.stages(), "T5Stage: stage ", stage, " of the layout ",
               layout_.str());
  // T5Model's modules (t5.cpp) in its registration order, under the same names.
  const bool tp = cfg_.tp != nullptr && cfg_.tp->size() > 1;
  const int64_t n = cfg_.n_layers, begin = layout_.begin(stage), end = layout_.end(stage);
  if (is_first())
    shared_ = register_module(
        "shared", tp ? std::make_shared<VocabParallelEmbedding>(cfg_.vocab, cfg_.d_model,
                                                                Init::normal(1.0), *cfg_.tp)
                     : std::make_shared<Embedding>(cfg_.vocab, cfg_.d_model, Init::normal(1.0)));
  if (begin < n) {
    auto encoder = register_module("encoder", std::make_shared<ModuleScope>("T5Encoder"));
    auto layers = encoder->add("layers", std::make_shared<ModuleScope>("ModuleList"));
    for (int64_t i = begin; i < std::min(end, n); ++i)
      enc_blocks_.push_back(layers->add(
          std::to_string(i),
          std::make_shared<T5EncoderBlock>(cfg_, i, i == 0 || !cfg_.share_position_bias)));
    if (end >= n)
      enc_norm_ = encoder->add("norm", std::make_shared<RMSNorm>(cfg_.d_model, cfg_.norm_eps));
  }
  if (end > n) {
    auto decoder = register_module("decoder", std::make_shared<ModuleScope>("T5Decoder"));
    auto layers = decoder->add("layers", std::make_shared<ModuleScope>("ModuleList"));
    for (int64_t j = std::max(begin, n) - n; j < end - n; ++j)
      dec_blocks_.push_back(layers->add(
          std::to_string(j),
          std::make_shared<T5DecoderBlock>(cfg_, j, j == 0 || !cfg_.share_position_bias)));
    if (is_last())
      dec_norm_ = decoder->add("norm", std::make_shared<RMSNorm>(cfg_.d_model, cfg_.norm_eps));
  }
  if (is_last())
    lm_head_ = register_module(
        "lm_head",
        tp ? std::make_shared<ParallelLMHead>(cfg_.d_model, cfg_.vocab, Init::normal(1.0), *cfg_.tp)
           : std::make_shared<LMHead>(cfg_.d_model, cfg_.vocab, Init::normal(1.0)));
  init_parameters(seed);
  set_precision(cfg_.precision);
}

void T5Stage::set_micro_batches(std::vector<T5MicroBatch> batches) {
  for (size_t i = 0; i < batches.size(); ++i) {
    const auto& b = batches[i];
    STRATA_CHECK(
        b.input_ids.defined() && b.input_ids.dim() == 2 && !is_floating(b.input_ids.dtype()),
        "T5Stage: micro-batch ", i, " needs integer input_ids [b, Ls]");
    STRATA_CHECK(b.labels.defined() && b.labels.dim() == 2 && !is_floating(b.labels.dtype()) &&
                     b.labels.size(0) == b.input_ids.size(0),
                 "T5Stage: micro-batch ", i, " needs integer labels [", b.input_ids.size(0),
                 ", Lt]");
    STRATA_CHECK(!b.encoder_mask.defined() || (b.encoder_mask.shape() == b.input_ids.shape() &&
                                               !is_floating(b.encoder_mask.dtype())),
                 "T5Stage: micro-batch ", i, " encoder_mask must be bool or integer ",
                 shape_str(b.input_ids.shape()));
  }
  batches_ = std::move(batches);
}

const T5MicroBatch& T5Stage::batch(int64_t micro) const {
  STRATA_CHECK(micro >= 0 && micro < int64_t(batches_.size()), "T5Stage: micro-batch ", micro,
               " of ", batches_.size(), " (call set_micro_batches before the step)");
  return batches_[size_t(micro)];
}

RandomKey T5Stage::dropout_key(uint32_t stack) const {
  return RandomKey{seed_,      uint32_t(RngStream::Dropout) | ((stack << 16) << 8),
                   step_,      0,
                   row_first_, row_stride_};
}

std::vector<T5Stage::Wire> T5Stage::wire_at(int64_t b) const {
  const int64_t n = cfg_.n_layers;
  const bool share = cfg_.share_position_bias;
  std::vector<Wire> w;
  if (b < n) {
    w = {Wire::EncHidden, Wire::DecEmbed};
    if (share) w.push_back(Wire::EncBias);
  } else if (b == n) {
    w = {Wire::Memory, Wire::DecEmbed};
  } else {
    w = {Wire::DecHidden, Wire::Memory};
    if (share) w.push_back(Wire::DecBias);
  }
  return w;
}

std::vector<parallel::TensorSpec> T5Stage::specs_at(int64_t boundary, int64_t micro) const {
  const T5MicroBatch& mb = batch(micro);
  const int64_t B = mb.input_ids.size(0), Ls = mb.input_ids.size(1), Lt = mb.labels.size(1);
  const int64_t heads = cfg_.n_heads / (cfg_.tp != nullptr ? cfg_.tp->size() : 1);
  // Block outputs are the residual stream (f32 under bf16 compute as well); the embedding, the
  // encoder's final norm output and the bias tables are in the parameters' dtype.
  const DType residual = precision().residual_dtype(dtype());
  std::vector<parallel::TensorSpec> specs;
  for (Wire w : wire_at(boundary)) {
    switch (w) {
      case Wire::EncHidden:
        specs.push_back({{B, Ls, cfg_.d_model}, residual});
        break;
      case Wire::Memory:
        specs.push_back({{B, Ls, cfg_.d_model}, dtype()});
        break;
      case Wire::DecEmbed:
        specs.push_back({{B, Lt, cfg_.d_model}, dtype()});
        break;
      case Wire::DecHidden:
        specs.push_back({{B, Lt, cfg_.d_model}, residual});
        break;
      case Wire::EncBias:
        specs.push_back({{1, heads, Ls, Ls}, dtype()});
        break;
      case Wire::DecBias:
        specs.push_back({{1, heads, Lt, Lt}, dtype()});
        break;
    }
  }
  return specs;
}

std::vector<parallel::TensorSpec> T5Stage::input_specs(int64_t micro) const {
  if (is_first()) return {};
  return specs_at(layout_.begin(stage_), micro);
}

std::vector<parallel::TensorSpec> T5Stage::output_specs(int64_t micro) const {
  if (is_last()) return {};
  return specs_at(layout_.end(stage_), micro);
}

std::vector<Tensor> T5Stage::forward(int64_t micro, const std::vector<Tensor>& inputs) {
  const T5MicroBatch& mb = batch(micro);
  const int64_t begin = layout_.begin(stage_), end = layout_.end(stage_);
  const int64_t Ls = mb.input_ids.size(1), Lt = mb.labels.size(1);
  const bool training = is_training();
  const RandomKey enc_key = dropout_key(0), dec_key = dropout_key(1);
  Tensor enc_h, dec_emb, enc_bias, memory, dec_h, dec_bias;
  auto slot = [&](Wire w) -> Tensor& {
    switch (w) {
      case Wire::EncHidden:
        return enc_h;
      case Wire::DecEmbed:
        return dec_emb;
      case Wire::EncBias:
        return enc_bias;
      case Wire::Memory:
        return memory;
      case Wire::DecHidden:
        return dec_h;
      case Wire::DecBias:
        break;
    }
    return dec_bias;
  };

  if (is_first()) {
    STRATA_CHECK(inputs.empty(), "T5Stage: the first stage got ", inputs.size(), " inputs");
    enc_h =
        maybe_dropout(shared_->forward(mb.input_ids), cfg_.dropout, training, at_site(enc_key, 0));
    const Tensor dec_ids = T5Model::shift_right(mb.labels, cfg_.decoder_start_id, cfg_.pad_id);
    dec_emb = maybe_dropout(shared_->forward(dec_ids), cfg_.dropout, training, at_site(dec_key, 0));
  } else {
    const auto wires = wire_at(begin);
    STRATA_CHECK(inputs.size() == wires.size(), "T5Stage: stage ", stage_, " got ", inputs.size(),
                 " inputs, expected ", wires.size());
    for (size_t k = 0; k < wires.size(); ++k) slot(wires[k]) = inputs[k];
  }
  const Tensor mask = bool_mask(mb.encoder_mask);

  // The loops of T5Encoder::forward and T5Decoder::forward over this stage's blocks.
  for (const auto& block : enc_blocks_) {
    const Tensor bias = block->rel_bias() ? block->rel_bias()->forward(Ls, Ls) : enc_bias;
    if (!enc_bias.defined()) enc_bias = bias;
    enc_h = block->forward(enc_h, bias, mask, enc_key);
  }
  if (enc_norm_)
    memory = maybe_dropout(enc_norm_->forward(enc_h), cfg_.dropout, training,
                           at_site(enc_key, kFinalSite));
  for (size_t k = 0; k < dec_blocks_.size(); ++k) {
    const auto& block = dec_blocks_[k];
    if (!dec_h.defined()) dec_h = dec_emb;  // this stage holds decoder block 0
    const Tensor bias = block->rel_bias() ? block->rel_bias()->forward(Lt, Lt, 0) : dec_bias;
    if (!dec_bias.defined()) dec_bias = bias;
    dec_h = block->forward(dec_h, bias, memory, mask, nullptr, nullptr, dec_key);
  }
  if (is_last()) {
    const Tensor out = maybe_dropout(dec_norm_->forward(dec_h), cfg_.dropout, training,
                                     at_site(dec_key, kFinalSite));
    const Tensor local = lm_head_->local_logits(out);
    if (!training) hits_ = count_hits(lm_head_->gather_logits(local), mb.labels);
    return {lm_head_->loss(local, mb.labels)};
  }
  std::vector<Tensor> outputs;
  for (Wire w : wire_at(end)) outputs.push_back(slot(w));
  return outputs;
}

}  // namespace strata::models
