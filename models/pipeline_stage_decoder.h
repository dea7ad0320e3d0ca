#pragma once
// One pipeline stage of DecoderLM (models/decoder_lm.h): the DecoderLM part that holds the
// stage's range of blocks, with the embedding on the first stage and the final norm, head and
// loss on the last. The forward pass is DecoderLM's own (embed_tokens, run_blocks, head_loss);
// this class only feeds it micro-batches and declares what crosses the stage boundary (the
// hidden state [b, L, d]). With tied embeddings the last stage holds a replica of `embed.weight`
// for its head (tied_parameters() lists it; the executor sums the two replicas' gradients).
#include <functional>
#include <vector>

#include "models/decoder_lm.h"
#include "models/pipeline_stage.h"
#include "parallel/pipeline_stage_compute.h"

namespace strata::models {

struct DecoderMicroBatch {
  Tensor ids;      // [b, L] integer
  Tensor targets;  // [b, L] integer, -100 ignored
  // When set (Sophia's Hessian pass), the last stage's loss is the cross-entropy of the whole
  // vocabulary's logits against relabel(logits, targets): labels drawn from the model's own
  // softmax (train/task.h, sample_labels), with no gradient through the draw.
  std::function<Tensor(const Tensor& logits, const Tensor& targets)> relabel;
};

class DecoderStage : public DecoderLM, public parallel::StageCompute {
 public:
  // Builds and initialises (from `seed`, as DecoderLM) the parameters stage `stage` owns.
  DecoderStage(const DecoderConfig& cfg, uint64_t seed, const StageLayout& layout, int stage);

  // The step's micro-batches; every stage is given the same ones (the first reads ids, the last
  // targets, every stage their shape). Dropout steps and batch rows: DecoderLM::set_step,
  // set_batch_rows.
  void set_micro_batches(std::vector<DecoderMicroBatch> batches);

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

  StageHits hits_;
  StageLayout layout_;
  int stage_;
  std::vector<DecoderMicroBatch> batches_;
};

}  // namespace strata::models
