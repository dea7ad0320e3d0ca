#pragma once
// `strata calibrate`: measures, on this machine, the reference costs a budget in reference seconds
// (budget.unit rst) charges: seconds per token of forward and of backward and per optimizer update
// of the run's model (train/budget_costs.h). No Train No Gain measured its tables once, on one
// reference machine, so that a budget does not depend on how fast an implementation runs a method;
// a table is measured once and named by every run that compares methods.
#include <cstdint>
#include <iosfwd>
#include <string>

#include "data/tokenizer.h"
#include "train/budget_costs.h"
#include "train/trainer.h"

namespace strata::train {

struct CalibrateOptions {
  std::string out = "runs/rst.table";
  int reps = 5;  // timed repetitions per measurement (the median is kept)
  bool all_depths =
      false;  // every depth 1..n_layers (layer dropping and stacking), not only the model's

  template <class V>
  void visit_options(V& v) {
    v("calibrate.out", out, "where the table goes (name it in budget.rst_table)");
    v("calibrate.reps", reps, "timed repetitions per measurement; the median is kept");
    v("calibrate.all_depths", all_depths,
      "measure every depth 1..n_layers (for layer dropping and stacking), not only the model's");
  }
};

// Times forward, forward + backward and the optimizer update of `options`' model on a micro-batch
// of data.micro_batch random rows (its objective's layout), in this process, with the run's
// precision and threads. The rows with fewer layers are the same model with fewer blocks (T5:
// per stack). Progress goes to `log`.
ReferenceCosts calibrate(const TrainOptions& options, const data::Tokenizer& tokenizer,
                         const CalibrateOptions& calibrate, std::ostream& log);

}  // namespace strata::train
