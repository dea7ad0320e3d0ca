#pragma once
// One pipeline stage of BertMLM (models/bert.h). The first stage owns `encoder.embed`, the last
// `encoder.final_norm`, `mlm_head`, the tied decoder and the loss; each owns its range of
// `encoder.layers.<i>`. The MLM decoder is tied to the word embedding, so the last stage holds a
// replica of `encoder.embed.word.weight` (tied_parameters(); the executor sums the replicas'
// gradients). Between stages travels the hidden state [b, L, d].
#include <vector>

#include "models/bert.h"
#include "models/pipeline_stage.h"
#include "parallel/pipeline_stage_compute.h"

namespace strata::models {

struct BertMicroBatch {
  Tensor ids;     // [b, L] integer
  Tensor labels;  // [b, L] integer, -100 at the positions not predicted
  Tensor mask;    // bool [b, L] (true = real token) or undefined
};

class BertStage : public Module, public parallel::StageCompute {
 public:
  // Builds and initialises (from `seed`, as BertMLM) the parameters stage `stage` owns.
  BertStage(const BertConfig& cfg, uint64_t seed, const StageLayout& layout, int stage);

  // The step's micro-batches, the same on every stage.
  void set_micro_batches(std::vector<BertMicroBatch> batches);
  void set_step(uint64_t step) { step_ = step; }
  // The micro-batches' rows within the batch the masks are drawn for, as BertMLM.
  void set_batch_rows(int64_t first, int64_t stride) { row_first_ = first, row_stride_ = stride; }

  int stage() const { return stage_; }
  bool is_first() const { return stage_ == 0; }
  bool is_last() const { return stage_ == layout_.stages() - 1; }

  std::vector<parallel::TensorSpec> input_specs(int64_t micro) const override;
  std::vector<parallel::TensorSpec> output_specs(int64_t micro) const override;
  Device stage_device() const override { return device(); }
  std::vector<Tensor> forward(int64_t micro, const std::vector<Tensor>& inputs) override;
  // The last stage's hits of its latest forward in eval mode (zero elsewhere and in training).
  StageHits eval_hits() const { return hits_; }
  std::vector<Tensor> tied_parameters() const override;

 private:
  const BertMicroBatch& batch(int64_t micro) const;
  Tensor mlm_loss(const Tensor& hidden, const Tensor& labels);  // records hits_ in eval mode

  BertConfig cfg_;
  uint64_t seed_;
  uint64_t step_ = 0;
  int64_t row_first_ = 0, row_stride_ = 1;
  StageHits hits_;
  StageLayout layout_;
  int stage_;
  std::vector<BertMicroBatch> batches_;
  std::shared_ptr<BertEmbeddings> embed_;  // first stage
  std::shared_ptr<const Embedding> word_;  // the word table here: embed_'s, or the last's replica
  std::vector<std::shared_ptr<BertLayer>> blocks_;
  std::shared_ptr<LayerNorm> final_norm_;
  std::shared_ptr<Linear> mlm_head_;
  std::shared_ptr<LMHead> decoder_;
};

}  // namespace strata::models
