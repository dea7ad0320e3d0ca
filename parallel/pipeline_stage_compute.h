#pragma once
// What the pipeline executor needs from the part of a model one stage owns. Header-only, so a
// model's stage wrapper (models/pipeline_stage*.h) implements it without linking the executor.
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace strata::parallel {

// Shape and dtype of one tensor crossing a stage boundary. Pipelines send static shapes (fixed by
// the model and the micro-batch shape), so the receiver allocates before the message arrives.
struct TensorSpec {
  Shape shape;
  DType dtype = DType::f32;
  friend bool operator==(const TensorSpec&, const TensorSpec&) = default;
  std::string str() const { return shape_str(shape) + " " + std::string(dtype_name(dtype)); }
};

class StageCompute {
 public:
  virtual ~StageCompute() = default;
  // The tensors this stage receives from the previous stage for micro-batch `micro` (none on the
  // first stage), and those it sends to the next (none on the last). Stage s's outputs are
  // stage s+1's inputs, in the same order.
  virtual std::vector<TensorSpec> input_specs(int64_t micro) const = 0;
  virtual std::vector<TensorSpec> output_specs(int64_t micro) const = 0;
  // Forward of micro-batch `micro`. `inputs` are the received tensors as leaves that require
  // grad: after backward their .grad is what goes back to the previous stage. Returns the
  // tensors to send, in output_specs order; the last stage returns one scalar, the micro-batch's
  // loss (the executor scales it by 1 / micro-batches, as gradient accumulation does).
  virtual std::vector<Tensor> forward(int64_t micro, const std::vector<Tensor>& inputs) = 0;
  // Parameters the first and the last stage both hold (an input embedding tied to the output
  // head), in the same order on both. After a step each replica's gradient is the sum of both,
  // so identical optimizer updates keep the replicas identical.
  virtual std::vector<Tensor> tied_parameters() const { return {}; }
  // Where the stage computes: received activations and gradients are allocated there, so a GPU
  // stage receives over NCCL straight into device memory.
  virtual Device stage_device() const { return Device::cpu(); }
};

}  // namespace strata::parallel
