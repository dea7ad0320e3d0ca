#pragma once
// The forward and backward of one training step, in whatever layout the run has. The Trainer
// (train/trainer.h) calls the same two functions on every path; what a parallel job adds sits
// behind them:
//   WholeModelStep  the micro-batch loop, written once: one process, or data and tensor
//                   parallelism (each micro-batch's loss weighted by this rank's share of its
//                   loss positions, the gradient reducer held back until the last micro-batch)
//   PipelineStep    the pipeline executor runs the micro-batches through this rank's stage
// Internal to train/.
#include <memory>
#include <vector>

#include "data/objectives.h"
#include "optim/optimizer.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/topology.h"
#include "train/task.h"

namespace strata::train {

class StepPath {
 public:
  virtual ~StepPath() = default;
  // Forward and backward over a step's micro-batches (this rank's rows of them): afterwards every
  // parameter's gradient is that of the step's loss, the mean over the micro-batches of each one's
  // mean loss, reduced over data parallelism. Returns that loss as a one-element f64 tensor on the
  // run's device, the same value on every rank; nothing is read back to the host.
  virtual Tensor forward_backward(const std::vector<data::Batch>& micro_batches) = 0;
  // The whole model's pre-clip gradient norm (a one-element f64 tensor on the run's device); when
  // clip > 0 and the norm exceeds it, scales every gradient down to it (optim/clip.h).
  virtual Tensor clip_gradients(double clip) = 0;
};

// The path of `topology`'s layout for `task` (a pipelined task gets PipelineStep). `micro_batches`
// is the count per step, which the pipeline schedule is built for.
std::unique_ptr<StepPath> make_step_path(Task& task, optim::Optimizer& optimizer,
                                         const parallel::Topology& topology, Device device,
                                         parallel::ScheduleKind schedule, int64_t micro_batches);

}  // namespace strata::train
