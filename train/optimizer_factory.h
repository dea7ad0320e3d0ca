#pragma once
// The optimizer of a run from its options (optim.name and the options of that optimizer), over
// the model's parameters split by the no-decay rule (optim/param_group.h): make_optimizer of
// train/trainer.h is defined here. Under tensor parallelism the RMS-scaled updates take the whole
// tensor's RMS (train/parallel_step.h). Internal to train/.
#include <cstdint>
#include <memory>

#include "models/module.h"
#include "optim/optimizer.h"
#include "parallel/communicator.h"
#include "train/trainer.h"

namespace strata::train {

// Throws naming the option and the fix for values the chosen optimizer cannot take, and for
// options set for an optimizer that does not read them where that is detectable (rms_scale).
void check_optimizer_options(const TrainOptions& o);

// `tokens_per_step` is Sophia's default B (optim.hessian_batch_tokens = 0).
std::unique_ptr<optim::Optimizer> make_optimizer(const TrainOptions& o, const models::Module& model,
                                                 parallel::Communicator& tp,
                                                 int64_t tokens_per_step);

}  // namespace strata::train
