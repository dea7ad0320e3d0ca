#pragma once
// Global-norm gradient clipping for a model split over a DP x TP x PP job: the norm of the whole
// model's gradient, as one process would compute it. Each parameter counts once: the squares of a
// tensor-parallel shard are summed over the tp group, a replicated parameter is counted on its own
// (it is the same on every tp rank), the stages' sums are added over the pp group, and a tied
// replica (the last stage's copy of the embedding) is skipped. After the data-parallel reduction
// the gradients, and so the norm, are the same on every dp rank.
#include <vector>

#include "core/tensor.h"
#include "models/module.h"
#include "parallel/topology.h"

namespace strata::train {

// The pre-clip global norm, the same bits on every rank. When max_norm > 0 and the norm exceeds
// it, every gradient is multiplied by max_norm / (norm + 1e-6), as optim::clip_grad_norm. A
// non-finite norm leaves the gradients unchanged.
double clip_parallel_grad_norm(const models::Module& model,
                               const std::vector<Tensor>& tied_replicas,
                               const parallel::Topology& topology, double max_norm);

}  // namespace strata::train
