#pragma once
// Training methods plug into the Trainer (train/trainer.h) at four named points of every step and
// keep their own state in checkpoints. The Trainer calls each point on every method, in the order
// the methods were added:
//
//   before_step     choose what the step trains           layer stacking, layer dropping
//   on_batch        score the micro-batches, select rows  selective backprop, RHO-loss
//   after_backward  extra passes on the step's gradients  (reads or edits the step's gradients)
//   on_clock        after the update: charge the step's   forward-only scoring; passes on the
//                   work; passes on the updated weights   new weights: Sophia's Hessian pass
//
// A step is: before_step, draw the micro-batches, on_batch, forward and backward over them,
// after_backward, clip, optimizer update, on_clock, clock advance. docs/architecture.md has a
// worked example. In a parallel job every rank calls every point, so a method must decide the
// same on every rank: randomness comes from Philox keyed by the seed, the step and what is being
// decided (core/random.h), never from a rank-local generator.
#include <cstdint>
#include <iosfwd>
#include <string>
#include <string_view>
#include <vector>

#include "data/objectives.h"
#include "optim/optimizer.h"
#include "parallel/topology.h"
#include "train/checkpoint.h"
#include "train/task.h"

namespace strata::train {

class StepPath;

// The work of one step, in tokens of the step's global batch (all data-parallel ranks together, as
// one process would count them; a token is an input position of a row). The Trainer fills it with
// the step it ran (trained = forward = backward tokens, one update); a method adds the work it ran
// besides: forward-only scoring adds forward_tokens, an extra backward pass (Sophia's Hessian
// estimate) both. A token budget counts trained_tokens; reference-time and FLOP budgets charge
// every forward, backward and update (train/budget_costs.h).
struct StepCharge {
  int64_t trained_tokens = 0;   // the rows the update was computed from
  int64_t forward_tokens = 0;   // every forward pass
  int64_t backward_tokens = 0;  // every backward pass
  int64_t updates = 0;          // optimizer updates
  int active_layers = 0;        // of the model's blocks (0: all): which reference costs apply
};

// What a method sees of the run during a step.
struct StepContext {
  int64_t step = 0;            // steps completed before this one
  double budget_fraction = 0;  // of the budget used when the step starts, in [0, 1)
  uint64_t seed = 0;           // run.seed
  Task* task = nullptr;        // the model (or this rank's stage) and its loss
  optim::Optimizer* optimizer = nullptr;
  const parallel::Topology* topology = nullptr;
  std::ostream* log = nullptr;  // world rank 0's run log; a silent stream on other ranks
  // The step's forward and backward (train/step_path.h), for a method's extra training-like
  // pass that must reduce its gradients as the step does in every layout (Sophia's Hessian
  // pass); gradients are empty when on_clock runs.
  StepPath* path = nullptr;
};

class TrainingMethod {
 public:
  virtual ~TrainingMethod() = default;
  // Names the method in the run log and prefixes its checkpoint keys ("method.<name>.").
  virtual std::string_view name() const = 0;

  virtual void before_step(StepContext& /*step*/) {}
  // May drop rows of the micro-batches (or replace them). Every micro-batch must keep at least
  // one row; under pipeline parallelism every stage must select the same rows.
  virtual void on_batch(StepContext& /*step*/, std::vector<data::Batch>& /*micro_batches*/) {}
  virtual void after_backward(StepContext& /*step*/) {}
  virtual void on_clock(StepContext& /*step*/, StepCharge& /*charge*/) {}

  // The method's state, under keys "method.<name>.*" of a checkpoint's trainer state, so a resumed
  // run decides exactly as the straight one. load_state is called only when resuming.
  virtual void save_state(CheckpointState& /*state*/) const {}
  virtual void load_state(const CheckpointState& /*state*/) {}

 protected:
  std::string key(std::string_view field) const {
    return "method." + std::string(name()) + "." + std::string(field);
  }
};

// The given rows of a batch, in that order: what a selecting method builds its batches from.
data::Batch select_rows(const data::Batch& batch, const std::vector<int64_t>& rows);

}  // namespace strata::train
