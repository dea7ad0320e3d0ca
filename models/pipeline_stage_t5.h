#pragma once
// One pipeline stage of T5Model (models/t5.h): the T5Model part that holds the stage's range of
// blocks; the forward pass is T5Model's own (embed, the stacks' run_blocks and finish,
// head_loss), and this class routes what crosses the boundary. The blocks are numbered in execution
// order, the encoder's then the decoder's, and the stage owns a contiguous range of them, so
// encoder stages come before decoder stages (a stage may hold the end of one stack and the start of
// the other). The first stage owns `shared` and embeds both the encoder input and the decoder input
// (so the table lives on one stage only); the stage with the last encoder block owns
// `encoder.norm`, the last stage `decoder.norm`, `lm_head` and the loss.
//
// What crosses the boundary after b blocks (n = encoder blocks):
//   b < n:  encoder hidden [B, Ls, d], decoder input embedding [B, Lt, d],
//           and the shared encoder position bias [1, H, Ls, Ls]
//   b == n: encoder output (memory) [B, Ls, d], decoder input embedding
//   b > n:  decoder hidden [B, Lt, d], memory, and the shared decoder position bias [1, H, Lt, Lt]
// (the biases only with share_position_bias, where block 0 of a stack owns the table and every
// block reuses its bias). Every decoder stage receives the memory for its cross-attention and
// passes it on; its gradient flows back summed over all the decoder blocks after it, as do the
// biases' gradients to the table that made them.
#include <functional>
#include <vector>

#include "models/pipeline_stage.h"
#include "models/t5.h"
#include "parallel/pipeline_stage_compute.h"

namespace strata::models {

struct T5MicroBatch {
  Tensor input_ids;     // [b, Ls] integer
  Tensor labels;        // [b, Lt] integer, -100 ignored (the decoder reads them shifted right)
  Tensor encoder_mask;  // [b, Ls] bool or integer (nonzero = real token), or undefined
  // When set (Sophia's Hessian pass), the last stage's loss is the cross-entropy of the whole
  // vocabulary's logits against relabel(logits, labels) (the decoder still reads the labels).
  std::function<Tensor(const Tensor& logits, const Tensor& labels)> relabel;
};

class T5Stage : public T5Model, public parallel::StageCompute {
 public:
  // layout covers n_layers + decoder_layers() blocks. Builds and initialises (from `seed`, as
  // T5Model) the parameters stage `stage` owns.
  T5Stage(const T5Config& cfg, uint64_t seed, const StageLayout& layout, int stage);

  // Dropout steps and batch rows: T5Model::set_step, set_batch_rows.
  void set_micro_batches(std::vector<T5MicroBatch> batches);

  int stage() const { return stage_; }
  bool is_first() const { return stage_ == 0; }
  bool is_last() const { return stage_ == layout_.stages() - 1; }

  std::vector<parallel::TensorSpec> input_specs(int64_t micro) const override;
  std::vector<parallel::TensorSpec> output_specs(int64_t micro) const override;
  Device stage_device() const override { return device(); }
  std::vector<Tensor> forward(int64_t micro, const std::vector<Tensor>& inputs) override;
  // The last stage's hits of its latest forward in eval mode (zero elsewhere and in training).
  StageHits eval_hits() const { return hits_; }

 private:
  enum class Wire { EncHidden, DecEmbed, EncBias, Memory, DecHidden, DecBias };
  std::vector<Wire> wire_at(int64_t boundary) const;
  std::vector<parallel::TensorSpec> specs_at(int64_t boundary, int64_t micro) const;
  const T5MicroBatch& batch(int64_t micro) const;

  StageHits hits_;
  StageLayout layout_;
  int stage_;
  std::vector<T5MicroBatch> batches_;
};

}  // namespace strata::models
