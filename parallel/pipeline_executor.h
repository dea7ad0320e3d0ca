#pragma once
// Runs one pipeline stage's part of a training step: the stage's action list from a
// PipelineSchedule, with activations and gradients travelling over the pp communicator.
//
// Per micro-batch i on stage s of p:
//   forward:  receive stage s-1's outputs (unless first) into preallocated leaves that require
//             grad, run the stage, send its outputs to stage s+1 (unless last; the last stage
//             keeps loss_i / m instead);
//   backward: receive the gradients of those outputs (unless last), backpropagate from the saved
//             outputs (or the scaled loss), send the inputs' gradients to stage s-1 (unless
//             first).
// Parameter gradients accumulate over the micro-batches in micro-batch order, exactly as
// gradient accumulation does in one process. Sends are asynchronous (a stage never blocks on a
// send, so a schedule that validates cannot deadlock) and receives block; neither changes a
// number, so a step is deterministic.
#include <cstdint>

#include "parallel/communicator.h"
#include "parallel/pipeline_schedule.h"
#include "parallel/pipeline_stage_compute.h"

namespace strata::parallel {

// Where one stage's step time went.
struct PipelineStats {
  double forward_s = 0;   // forward compute (with the loss on the last stage)
  double backward_s = 0;  // backward compute
  double wait_s = 0;      // blocked on receives and on sends still in flight at the end
  double wall_s = 0;      // the whole step on this stage
  double busy_s() const { return forward_s + backward_s; }
  // The share of the stage's time spent waiting rather than computing.
  double idle_fraction() const { return busy_s() + wait_s > 0 ? wait_s / (busy_s() + wait_s) : 0; }
};

struct PipelineStepResult {
  double loss = 0;  // mean of the micro-batch losses, on every stage (sent from the last)
  PipelineStats stats;
};

class PipelineExecutor {
 public:
  // `pp` is the pipeline group (Topology::pp()): its rank is the stage. The schedule is
  // validated here, so a bad one fails before any message is sent.
  PipelineExecutor(Communicator& pp, PipelineSchedule schedule);

  // One step over every micro-batch of the schedule: gradients are accumulated into the stage's
  // parameters (zero them before, step the optimizer after), tied parameters are summed between
  // the first and the last stage, and the loss is shared with every stage.
  PipelineStepResult run(StageCompute& stage);

  const PipelineSchedule& schedule() const { return schedule_; }
  int stage() const { return pp_.rank(); }

 private:
  void sync_tied_gradients(StageCompute& stage);

  Communicator& pp_;
  PipelineSchedule schedule_;
};

}  // namespace strata::parallel
