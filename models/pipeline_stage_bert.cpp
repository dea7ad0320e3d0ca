#include "models/pipeline_stage_bert.h"

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/random/philox.h"
#include "models/tp_embedding.h"
#include "models/tp_lm_head.h"

namespace strata::models {

BertStage::BertStage(const BertConfig& cfg, uint64_t seed, const StageLayout& layout, int stage)
    : Module("BertStage"), cfg_(cfg), seed_(seed), layout_(layout), stage_(stage) {
  cfg_.validate();
  STRATA_CHECK(layout_.blocks() == cfg_.n_layers, "BertStage: the layout ", layout_.str(),
               " covers ", layout_.blocks(), " blocks but the model has n_layers ", cfg_.n_layers);
  STRATA_CHECK(stage >= 0 && stage < layout_.stages(), "BertStage: stage ", stage,
               " of the layout ", layout_.str());
  // BertMLM's modules (bert.cpp) in its registration order, under the same names.
  const Init init = Init::normal(cfg_.init_std);
  const bool tp = cfg_.tp != nullptr && cfg_.tp->size() > 1;
  auto encoder = register_module("encoder", std::make_shared<ModuleScope>("BertEncoder"));
  if (is_first()) {
    embed_ = encoder->add("embed", std::make_shared<BertEmbeddings>(cfg_));
    word_ = embed_->word_ptr();
  } else if (is_last()) {
    auto embed = encoder->add("embed", std::make_shared<ModuleScope>("BertEmbeddings"));
    word_ = embed->add("word", tp ? std::make_shared<VocabParallelEmbedding>(
                                        cfg_.vocab, cfg_.d_model, init, *cfg_.tp)
                                  : std::make_shared<Embedding>(cfg_.vocab, cfg_.d_model, init));
  }
  auto layers = encoder->add("layers", std::make_shared<ModuleScope>("ModuleList"));
  for (int64_t i = layout_.begin(stage); i < layout_.end(stage); ++i)
    blocks_.push_back(layers->add(std::to_string(i), std::make_shared<BertLayer>(cfg_, i)));
  if (is_last()) {
    final_norm_ =
        encoder->add("final_norm", std::make_shared<LayerNorm>(cfg_.d_model, cfg_.norm_eps, true));
    mlm_head_ = register_module("mlm_head",
                                std::make_shared<Linear>(cfg_.d_model, cfg_.d_model, false, init));
    if (tp)
      decoder_ = std::make_shared<ParallelLMHead>(
          std::dynamic_pointer_cast<const VocabParallelEmbedding>(word_));
    else
      decoder_ = std::make_shared<LMHead>(word_);
    register_module("decoder", decoder_);
  }
  init_parameters(seed);
  set_precision(cfg_.precision);
  // As BertMLM: the pad row of the word table starts at zero (on the rank holding it under
  // tensor parallelism), on every stage holding a copy of the table.
  if (word_ && cfg_.pad_id >= 0) {
    NoGradGuard no_grad;
    Tensor w = word_->weight();
    const int64_t row = cfg_.pad_id - sharding("encoder.embed.word.weight").offset();
    if (row >= 0 && row < w.size(0)) w.narrow(0, row, 1).zero_();
  }
}

void BertStage::set_micro_batches(std::vector<BertMicroBatch> batches) {
  for (size_t i = 0; i < batches.size(); ++i) {
    const auto& b = batches[i];
    STRATA_CHECK(b.ids.defined() && b.ids.dim() == 2 && !is_floating(b.ids.dtype()) &&
                     b.ids.size(1) <= cfg_.max_seq,
                 "BertStage: micro-batch ", i, " needs integer ids [b, L <= ", cfg_.max_seq, "]");
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

std::vector<parallel::TensorSpec> BertStage::input_specs(int64_t micro) const {
  if (is_first()) return {};
  const Tensor& ids = batch(micro).ids;
  return {{{ids.size(0), ids.size(1), cfg_.d_model}, precision().residual_dtype(dtype())}};
}

std::vector<parallel::TensorSpec> BertStage::output_specs(int64_t micro) const {
  if (is_last()) return {};
  const Tensor& ids = batch(micro).ids;
  return {{{ids.size(0), ids.size(1), cfg_.d_model}, precision().residual_dtype(dtype())}};
}

std::vector<Tensor> BertStage::forward(int64_t micro, const std::vector<Tensor>& inputs) {
  const BertMicroBatch& mb = batch(micro);
  STRATA_CHECK(inputs.size() == (is_first() ? 0u : 1u), "BertStage: stage ", stage_, " got ",
               inputs.size(), " inputs");
  // BertMLM's key (bert.cpp): site 0 is the embedding, block i uses 2i+1 and 2i+2.
  const RandomKey key{seed_, uint32_t(RngStream::Dropout), step_, 0, row_first_, row_stride_};
  Tensor h;
  if (is_first()) {
    h = embed_->forward(mb.ids);
    if (cfg_.dropout > 0 && is_training()) h = dropout(h, cfg_.dropout, key, true);
  } else {
    h = inputs[0];
  }
  for (const auto& block : blocks_) h = block->forward(h, mb.mask, key);
  if (!is_last()) return {h};
  return {mlm_loss(final_norm_->forward(h), mb.labels)};
}

// BertMLM::mlm's sparse prediction: the head and the loss only at the labelled positions, and an
// exact zero that still reaches every parameter when there is none.
Tensor BertStage::mlm_loss(const Tensor& h, const Tensor& labels) {
  const auto lab = labels.to(DType::i64).contiguous().to_vector<int64_t>();
  std::vector<int64_t> pos, tgt;
  for (size_t i = 0; i < lab.size(); ++i)
    if (lab[i] != -100) {
      STRATA_CHECK(lab[i] >= 0 && lab[i] < cfg_.vocab, "BertStage: label ", lab[i],
                   " at flat position ", i, " is outside [0, ", cfg_.vocab, ") and not -100");
      pos.push_back(int64_t(i));
      tgt.push_back(lab[i]);
    }
  if (pos.empty()) {
    if (!is_training()) hits_ = {};
    return sum(decoder_->local_logits(mlm_head_->forward(h.select(1, 0)))) * 0.0;
  }
  const int64_t M = int64_t(pos.size());
  const Tensor rows = index_select(h.reshape({h.size(0) * h.size(1), cfg_.d_model}), 0,
                                   from_vector<int64_t>(pos, {M}));
  const Tensor local = decoder_->local_logits(mlm_head_->forward(rows));
  const Tensor targets = from_vector<int64_t>(tgt, {M});
  if (!is_training()) hits_ = count_hits(decoder_->gather_logits(local), targets);
  return decoder_->loss(local, targets);
}

std::vector<Tensor> BertStage::tied_parameters() const {
  if (is_first() == is_last()) return {};
  return {word_->weight()};
}

}  // namespace strata::models
