#pragma once
// One pipeline stage of BertMLM (models/bert.h): the BertMLM part that holds the stage's range
// of `encoder.layers.<i>`, with `encoder.embed` on the first stage and `encoder.final_norm`,
// `mlm_head`, the tied decoder and the loss on the last. The forward pass is BertMLM's own
// (BertEncoder::embed_tokens / run_blocks / final_norm, BertMLM::predict_masked); this class only
// feeds it micro-batches and declares what crosses the boundary (the hidden state [b, L, d]).
// The MLM decoder is tied to the word embedding, so the last stage holds a replica of
// `encoder.embed.word.weight` (tied_parameters(); the executor sums the replicas' gradients).
#include <functional>
#include <vector>

#include "models/bert.h"
#include "models/pipeline_stage.h"
#include "parallel/pipeline_stage_compute.h"

namespace strata::models {

struct BertMicroBatch {
  Tensor ids;     // [b, L] integer
  Tensor labels;  // [b, L] integer, -100 at the positions not predicted
  Tensor mask;    // bool [b, L] (true = real token) or undefined
  // When set (Sophia's Hessian pass), the last stage's loss is the cross-entropy of the whole
  // vocabulary's logits at the predicted positions [M, vocab] against relabel(logits, targets
  // [M]) (gathered under tensor parallelism, with autograd).
  std::function<Tensor(const Tensor& logits, const Tensor& targets)> relabel;
};

class BertStage : public BertMLM, public parallel::StageCompute {
 public:
  // Builds and initialises (from `seed`, as BertMLM) the parameters stage `stage` owns.
  BertStage(const BertConfig& cfg, uint64_t seed, const StageLayout& layout, int stage);

  // The step's micro-batches, the same on every stage. Dropout steps and batch rows:
  // BertMLM::set_step, set_batch_rows.
  void set_micro_batches(std::vector<BertMicroBatch> batches);

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
  parallel::TensorSpec hidden_spec(int64_t micro) const;

  StageHits hits_;
  StageLayout layout_;
  int stage_;
  std::vector<BertMicroBatch> batches_;
};

}  // namespace strata::models
