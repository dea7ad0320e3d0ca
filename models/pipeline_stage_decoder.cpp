#include "models/pipeline_stage_decoder.h"

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {
DecoderStage::DecoderStage(const DecoderConfig& cfg, uint64_t seed, const StageLayout& layout,
                           int stage)
    : DecoderLM(cfg, seed,
                ModelPart::stage(layout, stage, cfg.n_layers, "DecoderStage",
                                 "n_layers " + std::to_string(cfg.n_layers))),
      layout_(layout),
      stage_(stage) {}

void DecoderStage::set_micro_batches(std::vector<DecoderMicroBatch> batches) {
  for (size_t i = 0; i < batches.size(); ++i) {
    const auto& b = batches[i];
    STRATA_CHECK(b.ids.defined() && b.ids.dim() == 2 && !is_floating(b.ids.dtype()),
                 "DecoderStage: micro-batch ", i, " needs integer ids [b, L]");
    STRATA_CHECK(b.targets.defined() && b.targets.shape() == b.ids.shape(),
                 "DecoderStage: micro-batch ", i, " targets must match its ids ",
                 shape_str(b.ids.shape()));
  }
  batches_ = std::move(batches);
}

const DecoderMicroBatch& DecoderStage::batch(int64_t micro) const {
  STRATA_CHECK(micro >= 0 && micro < int64_t(batches_.size()), "DecoderStage: micro-batch ", micro,
               " of ", batches_.size(), " (call set_micro_batches before the step)");
  return batches_[size_t(micro)];
}

parallel::TensorSpec DecoderStage::hidden_spec(int64_t micro) const {
  const Tensor& ids = batch(micro).ids;
  // The residual stream crosses the stage boundary (f32 under bf16 compute as well).
  return {{ids.size(0), ids.size(1), config().d_model}, precision().residual_dtype(dtype())};
}

std::vector<parallel::TensorSpec> DecoderStage::input_specs(int64_t micro) const {
  if (is_first()) return {};
  return {hidden_spec(micro)};
}

std::vector<parallel::TensorSpec> DecoderStage::output_specs(int64_t micro) const {
  if (is_last()) return {};
  return {hidden_spec(micro)};
}

std::vector<Tensor> DecoderStage::forward(int64_t micro, const std::vector<Tensor>& inputs) {
  const DecoderMicroBatch& mb = batch(micro);
  STRATA_CHECK(inputs.size() == (is_first() ? 0u : 1u), "DecoderStage: stage ", stage_, " got ",
               inputs.size(), " inputs");
  const Tensor h = run_blocks(is_first() ? embed_tokens(mb.ids) : inputs[0]);
  if (!is_last()) return {h};
  if (mb.relabel) {
    const Tensor logits = head_logits(h);
    return {cross_entropy(logits, mb.relabel(logits, mb.targets))};
  }
  return {head_loss(h, mb.targets, is_training() ? nullptr : &hits_)};
}

std::vector<Tensor> DecoderStage::tied_parameters() const {
  if (!config().tie_embeddings || is_first() == is_last()) return {};
  return {parameter("embed.weight")};
}

}  // namespace strata::models
