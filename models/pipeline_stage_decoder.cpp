#include "models/pipeline_stage_decoder.h"

#include "core/error.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "models/tp_embedding.h"
#include "models/tp_lm_head.h"

namespace strata::models {

DecoderStage::DecoderStage(const DecoderConfig& cfg, uint64_t seed, const StageLayout& layout,
                           int stage)
    : Module("DecoderStage"), cfg_(cfg), seed_(seed), layout_(layout), stage_(stage) {
  cfg_.validate();
  STRATA_CHECK(layout_.blocks() == cfg_.n_layers, "DecoderStage: the layout ", layout_.str(),
               " covers ", layout_.blocks(), " blocks but the model has n_layers ", cfg_.n_layers);
  STRATA_CHECK(stage >= 0 && stage < layout_.stages(), "DecoderStage: stage ", stage,
               " of the layout ", layout_.str());
  // The same modules as DecoderLM's constructor (decoder_lm.cpp), in its registration order, so
  // the stage lists its parameters in the whole model's order; tensor parallelism (cfg.tp) splits
  // the embedding and the head as there.
  const Init init = Init::normal(cfg_.init_std);
  const bool tp = cfg_.tp != nullptr && cfg_.tp->size() > 1;
  std::shared_ptr<VocabParallelEmbedding> tp_embed;
  if (is_first() || (is_last() && cfg_.tie_embeddings)) {
    if (tp) {
      tp_embed = std::make_shared<VocabParallelEmbedding>(cfg_.vocab, cfg_.d_model, init, *cfg_.tp);
      embed_ = register_module("embed", tp_embed);
    } else {
      embed_ =
          register_module("embed", std::make_shared<Embedding>(cfg_.vocab, cfg_.d_model, init));
    }
  }
  auto layers = register_module("layers", std::make_shared<ModuleScope>("ModuleList"));
  for (int64_t i = layout_.begin(stage); i < layout_.end(stage); ++i)
    blocks_.push_back(layers->add(std::to_string(i), std::make_shared<DecoderBlock>(cfg_, i)));
  if (is_last()) {
    norm_ = register_module("norm", std::make_shared<RMSNorm>(cfg_.d_model, cfg_.norm_eps));
    if (tp)
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
  return {{ids.size(0), ids.size(1), cfg_.d_model}, precision().residual_dtype(dtype())};
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
  // The same key and sites as DecoderLM::hidden (decoder_lm.cpp): site 0 is the embedding, the
  // blocks add their own sites.
  const RandomKey key{seed_, uint32_t(RngStream::Dropout), step_, 0, row_first_, row_stride_};
  Tensor h;
  if (is_first()) {
    h = embed_->forward(mb.ids);
    if (cfg_.dropout > 0 && is_training()) h = dropout(h, cfg_.dropout, key, true);
  } else {
    h = inputs[0];
  }
  for (const auto& block : blocks_) h = block->forward(h, nullptr, key);
  if (!is_last()) return {h};
  const Tensor local = lm_head_->local_logits(norm_->forward(h));
  if (!is_training()) hits_ = count_hits(lm_head_->gather_logits(local), mb.targets);
  return {lm_head_->loss(local, mb.targets)};
}

std::vector<Tensor> DecoderStage::tied_parameters() const {
  if (!cfg_.tie_embeddings || is_first() == is_last()) return {};
  return {embed_->weight()};
}

}  // namespace strata::models
