#pragma once
// Sophia-G's Hessian EMA (optim/sophia.h; ALGORITHMS.md 3.6) as a training method: every k steps
// a Gauss-Newton-Bartlett pass over the step's micro-batches (one optimizer batch, as No Train No
// Gain's T5) draws labels from the model's own softmax, backpropagates the mean cross-entropy
// against them through the step's own path (StepContext::path: the same micro-batch weighting
// and data-parallel reduction as the step) and calls Sophia::update_hessian.
//
// Where: on_clock, i.e. after the optimizer step and zero_grad. The authors' loop
// (train_sophiag.py) runs the pass after optimizer.step() and zero_grad() on the updated
// weights, so this is their order, and the step's real gradients are gone by then and cannot be
// polluted (after_backward, the hook meant for extra passes, would have to save and restore
// every gradient). The pass runs at steps s (0-based) with s % k == k - 1, as theirs.
//
// Draws: Philox keyed by (run.seed, stream 6, step, the row's global sample index, position)
// (Task::set_label_sampling, sample_labels), so a resumed run and every data- or
// tensor-parallel layout draw the same labels; the pass count and the last win rate go into
// checkpoints. The win rate (fraction of unclipped coordinates, over the whole model in any
// layout) is printed with each pass. Under pipeline parallelism the last stage draws the labels.
// The pass's work (one forward and one backward over the step's batch) is charged to the step
// (StepCharge forward_tokens and backward_tokens: RST and FLOP budgets count it, a token budget
// does not) and counted in hessian_tokens().

#include <cstdint>
#include <vector>

#include "optim/sophia.h"
#include "train/step_path.h"
#include "train/training_method.h"

namespace strata::train {

// Philox stream of the sampled labels (beside core/random/philox.h's RngStream values 1-5 and 100).
inline constexpr uint32_t kHessianLabelStream = 6;

class SophiaHessian final : public TrainingMethod {
 public:
  explicit SophiaHessian(int64_t every);
  std::string_view name() const override { return "sophia_hessian"; }
  void before_step(StepContext& step) override;
  void on_batch(StepContext& step, std::vector<data::Batch>& micro_batches) override;
  void on_clock(StepContext& step, StepCharge& charge) override;
  void save_state(CheckpointState& state) const override;
  void load_state(const CheckpointState& state) override;

  int64_t passes() const { return passes_; }
  int64_t hessian_tokens() const { return hessian_tokens_; }
  double last_win_rate() const { return last_win_rate_; }

  // One pass: `path`'s forward and backward of the batches with the task's labels drawn
  // (Task::set_label_sampling), update_hessian, zero_grad. Gradients must be empty on entry (they
  // are after the optimizer step). Public for tests.
  static void hessian_pass(Task& task, optim::Sophia& sophia, StepPath& path,
                           const std::vector<data::Batch>& batches, uint64_t seed, int64_t step);

 private:
  int64_t every_;
  int64_t passes_ = 0;
  int64_t hessian_tokens_ = 0;
  double last_win_rate_ = 0;
  std::vector<data::Batch> batches_;  // the step's micro-batches, for the pass
  bool checked_ = false;              // the task can draw labels
};

}  // namespace strata::train
