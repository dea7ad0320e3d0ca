#pragma once
// One pipeline stage of DecoderLM (models/decoder_lm.h). The first stage owns `embed`, the last
// `norm`, `lm_head` and the loss; each owns its range of `layers.<i>`. With tied embeddings the
// last stage holds a replica of `embed.weight` for its head (tied_parameters() lists it; the
// executor sums the two replicas' gradients). Between stages travels the hidden state [b, L, d].
#include <vector>

#include "models/decoder_lm.h"
#include "models/pipeline_stage.h"
#include "parallel/pipeline_stage_compute.h"

namespace strata::models {

struct DecoderMicroBatch {
  Tensor ids;      // [b, L] integer
  Tensor targets;  // [b, L] integer, -100 ignored
};

class DecoderStage : public Module, public parallel::StageCompute {
 public:
  // Builds and initialises (from `seed`, as DecoderLM) the parameters stage `stage` owns.
  DecoderStage(const DecoderConfig& cfg, uint64_t seed, const StageLayout& layout, int stage);

  // The step's micro-batches; every stage is given the same ones (the first reads ids, the last
  // targets, every stage their shape).
  void set_micro_batches(std::vector<DecoderMicroBatch> batches);
  // Dropout masks are keyed by (seed, site, step), as DecoderLM::set_step.
  void set_step(uint64_t step) { step_ = step; }
  // The micro-batches' rows within the batch the masks are drawn for, as DecoderLM.
  void set_batch_rows(int64_t first, int64_t stride) { row_first_ = first, row_stride_ = stride; }

  int stage() const { return stage_; }
  bool is_first() const { return stage_ == 0; }
  bool is_last() const { return stage_ == layout_.stages() - 1; }
  const StageLayout& layout() const { return layout_; }

  std::vector<parallel::TensorSpec> input_specs(int64_t micro) const override;
  std::vector<parallel::TensorSpec> output_specs(int64_t micro) const override;
  Device stage_device() const override { return device(); }
  std::vector<Tensor> forward(int64_t micro, const std::vector<Tensor>& inputs) override;
  // The last stage's hits of its latest forward in eval mode (zero elsewhere and in training).
  StageHits eval_hits() const { return hits_; }
  std::vector<Tensor> tied_parameters() const override;

 private:
  const DecoderMicroBatch& batch(int64_t micro) const;
  parallel::TensorSpec hidden_spec(int64_t micro) const;

  DecoderConfig cfg_;
  uint64_t seed_;
  uint64_t step_ = 0;
  int64_t row_first_ = 0, row_stride_ = 1;
  StageHits hits_;
  StageLayout layout_;
  int stage_;
  std::vector<DecoderMicroBatch> batches_;
  std::shared_ptr<Embedding> embed_;  // first stage; the last too (a replica) when tied
  std::vector<std::shared_ptr<DecoderBlock>> blocks_;
  std::shared_ptr<RMSNorm> norm_;
  std::shared_ptr<LMHead> lm_head_;
};

}  // namespace strata::models
