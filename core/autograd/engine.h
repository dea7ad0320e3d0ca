#pragma once
#include <vector>

#include "core/tensor.h"

namespace strata::autograd {

// Runs backward from `roots` seeded with `grads` (one per root, same shapes). The graph is walked
// with explicit stacks and a ready queue, never recursion, so graphs of 10^5+ nodes are fine.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads,
                  bool retain_graph = false);

}  // namespace strata::autograd
