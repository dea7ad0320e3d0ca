#include "models/pipeline_stage_t5.h"

#include "core/ops.h"

#include "core/error.h"

namespace strata::models {

T5Stage::T5Stage(const T5Config& cfg, uint64_t seed, const StageLayout& layout, int stage)
    : T5Model(cfg, seed,
              ModelPart::stage(layout, stage, num_blocks(cfg), "T5Stage",
                               std::to_string(cfg.n_layers) + " encoder + " +
                                   std::to_string(cfg.decoder_layers()) + " decoder blocks")),
      layout_(layout),
      stage_(stage) {}

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

std::vector<T5Stage::Wire> T5Stage::wire_at(int64_t b) const {
  const int64_t n = config().n_layers;
  const bool share = config().share_position_bias;
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
  const int64_t heads = config().n_heads / (config().tp != nullptr ? config().tp->size() : 1);
  // Block outputs are the residual stream (f32 under bf16 compute as well); the embedding, the
  // encoder's final norm output and the bias tables are in the parameters' dtype.
  const DType residual = precision().residual_dtype(dtype());
  std::vector<parallel::TensorSpec> specs;
  for (Wire w : wire_at(boundary)) {
    switch (w) {
      case Wire::EncHidden:
        specs.push_back({{B, Ls, config().d_model}, residual});
        break;
      case Wire::Memory:
        specs.push_back({{B, Ls, config().d_model}, dtype()});
        break;
      case Wire::DecEmbed:
        specs.push_back({{B, Lt, config().d_model}, dtype()});
        break;
      case Wire::DecHidden:
        specs.push_back({{B, Lt, config().d_model}, residual});
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

  const T5Config& c = config();
  if (is_first()) {
    STRATA_CHECK(inputs.empty(), "T5Stage: the first stage got ", inputs.size(), " inputs");
    enc_h = embed(mb.input_ids, 0);
    dec_emb = embed(T5Model::shift_right(mb.labels, c.decoder_start_id, c.pad_id), 1);
  } else {
    const auto wires = wire_at(begin);
    STRATA_CHECK(inputs.size() == wires.size(), "T5Stage: stage ", stage_, " got ", inputs.size(),
                 " inputs, expected ", wires.size());
    for (size_t k = 0; k < wires.size(); ++k) slot(wires[k]) = inputs[k];
  }
  const Tensor mask = bool_mask(mb.encoder_mask, mb.input_ids.size(0), mb.input_ids.size(1));
  const int64_t n = c.n_layers;
  if (begin < n) {
    enc_h = encoder().run_blocks(enc_h, enc_bias, mask, enc_key);
    if (end >= n) memory = encoder().finish(enc_h, enc_key);
  }
  if (end > n) {
    if (begin <= n) dec_h = dec_emb;  // this stage holds decoder block 0
    dec_h = decoder().run_blocks(dec_h, dec_bias, memory, mask, dec_key);
  }
  if (is_last() && mb.relabel) {
    const Tensor logits = head_logits(decoder().finish(dec_h, dec_key));
    return {cross_entropy(logits, mb.relabel(logits, mb.labels))};
  }
  if (is_last())
    return {head_loss(decoder().finish(dec_h, dec_key), mb.labels, training ? nullptr : &hits_)};
  std::vector<Tensor> outputs;
  for (Wire w : wire_at(end)) outputs.push_back(slot(w));
  return outputs;
}

}  // namespace strata::models
