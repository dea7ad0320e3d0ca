#include "models/pipeline_stage_bert.h"

#include "core/error.h"
#include "core/ops.h"
#include "parallel/tp_mappings.h"

namespace strata::models {

BertStage::BertStage(const BertConfig& cfg, uint64_t seed, const StageLayout& layout, int stage)
    : BertMLM(cfg, seed,
              ModelPart::stage(layout, stage, cfg.n_layers, "BertStage",
                               "n_layers " + std::to_string(cfg.n_layers))),
      layout_(layout),
      stage_(stage) {}

void BertStage::set_micro_batches(std::vector<BertMicroBatch> batches) {
  for (size_t i = 0; i < batches.size(); ++i) {
    const auto& b = batches[i];
    STRATA_CHECK(b.ids.defined() && b.ids.dim() == 2 && !is_floating(b.ids.dtype()) &&
                     b.ids.size(1) <= config().max_seq,
                 "BertStage: micro-batch ", i, " needs integer ids [b, L <= ", config().max_seq,
                 "]");
    STRATA_CHECK(
        b.labels.defined() && b.labels.shape() == b.ids.shape() && !is_floating(b.labels.dtype()),
        "BertStage: micro-batch ", i, " labels must be integer ", shape_str(b.ids.shape()));
    STRATA_CHECK(
        !b.mask.defined() || (b.mask.dtype() == DType::b8 && b.mask.shape() == b.ids.shape()),
        "BertStage: micro-batch ", i, " mask must be bool ", shape_str(b.ids.shape()));
  }
  batches_ = std::move(batches);
}

const BertMicroBatch& BertStage::batch(int64_t micro) const {
  STRATA_CHECK(micro >= 0 && micro < int64_t(batches_.size()), "BertStage: micro-batch ", micro,
               " of ", batches_.size(), " (call set_micro_batches before the step)");
  return batches_[size_t(micro)];
}

parallel::TensorSpec BertStage::hidden_spec(int64_t micro) const {
  const Tensor& ids = batch(micro).ids;
  return {{ids.size(0), ids.size(1), config().d_model}, precision().residual_dtype(dtype())};
}

std::vector<parallel::TensorSpec> BertStage::input_specs(int64_t micro) const {
  if (is_first()) return {};
  return {hidden_spec(micro)};
}

std::vector<parallel::TensorSpec> BertStage::output_specs(int64_t micro) const {
  if (is_last()) return {};
  return {hidden_spec(micro)};
}

std::vector<Tensor> BertStage::forward(int64_t micro, const std::vector<Tensor>& inputs) {
  const BertMicroBatch& mb = batch(micro);
  STRATA_CHECK(inputs.size() == (is_first() ? 0u : 1u), "BertStage: stage ", stage_, " got ",
               inputs.size(), " inputs");
  const RandomKey key = dropout_base();
  const BertEncoder& enc = encoder();
  const Tensor h =
      enc.run_blocks(is_first() ? enc.embed_tokens(mb.ids, key) : inputs[0], mb.mask, key);
  if (!is_last()) return {h};
  if (mb.relabel) {
    const MLMOutput out = predict_masked(enc.final_norm(h), mb.labels);
    const parallel::Communicator* tp = config().tp;
    const Tensor logits = tp != nullptr && tp->size() > 1
                              ? parallel::gather_from_tp(out.logits, *config().tp, "tp.sophia.mlm")
                              : out.logits;
    return {cross_entropy(logits, mb.relabel(logits, out.targets))};
  }
  return {predict_masked(enc.final_norm(h), mb.labels, is_training() ? nullptr : &hits_).loss};
}

std::vector<Tensor> BertStage::tied_parameters() const {
  if (is_first() == is_last()) return {};
  return {encoder().word_ptr()->weight()};
}

}  // namespace strata::models
