#pragma once
// Activation recompute (gradient checkpointing): the forward pass of `fn` keeps no intermediate
// activations; backward reruns `fn` on the saved inputs with history on and backpropagates
// through that fresh graph. Randomness inside `fn` must come from Philox keys (as dropout's does)
// so the rerun sees the same numbers.
//
// Parameters captured by `fn` receive their gradients during the rerun's own backward pass, so a
// leaf used both inside and outside the region has its grad-ready hook fired once per pass that
// reaches it.
#include <functional>
#include <vector>

#include "core/tensor.h"

namespace strata {

using RecomputeFn = std::function<Tensor(const std::vector<Tensor>&)>;

Tensor recompute(const RecomputeFn& fn, const std::vector<Tensor>& inputs);

}  // namespace strata
