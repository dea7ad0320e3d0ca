#pragma once
// What a step's work costs on the budget clocks that charge work rather than count steps, tokens
// or wall time: reference seconds (No Train No Gain's RST, ALGORITHMS.md 2.3), from costs measured
// once per machine by `strata calibrate`, and FLOPs, from the model's analytic count. Both charge
// the same work (a StepCharge): every forward pass, training or scoring, every backward pass and
// every optimizer update. Evaluation is not charged.
#include <map>
#include <string>

#include "train/training_method.h"

namespace strata::train {

// Costs of one model configuration: per token of forward and of backward, and per update.
struct WorkCosts {
  double forward_per_token = 0;
  double backward_per_token = 0;
  double per_update = 0;
};

// Reference seconds of one model, by active layers (a row per depth `strata calibrate` measured;
// the deepest row is the whole model). Stored as a text file:
//   # comment lines
//   model <Task::describe() of the model it was measured for>
//   <layers> <forward s/token> <backward s/token> <update s>     (one line per depth)
class ReferenceCosts {
 public:
  ReferenceCosts(std::string model, std::map<int, WorkCosts> by_layers);

  // Throws naming the file and line for anything it cannot read.
  static ReferenceCosts load(const std::string& path);
  // Written to a temporary sibling and renamed, so a reader never sees half a table.
  void save(const std::string& path, const std::string& comment) const;

  const std::string& model() const { return model_; }
  const std::map<int, WorkCosts>& rows() const { return rows_; }
  // The costs at `active_layers` (0: the deepest row). Throws for a depth the table lacks.
  const WorkCosts& at(int active_layers) const;

 private:
  std::string model_;
  std::map<int, WorkCosts> rows_;
};

// A step's reference seconds: forward and backward tokens and updates at their costs.
double reference_seconds(const StepCharge& charge, const ReferenceCosts& costs);
// A step's FLOPs, from the training FLOPs per token (forward and backward, PaLM's 6N convention
// plus attention): a forward is a third of them, a backward two thirds; updates are not counted
// (their O(parameters) work is negligible beside O(parameters x tokens)).
double step_flops(const StepCharge& charge, double training_flops_per_token);

}  // namespace strata::train
