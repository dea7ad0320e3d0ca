#pragma once
// Cross-entropy over logits split by vocabulary across a tensor-parallel group (Megatron's
// vocab-parallel cross-entropy): rank r holds logits[..., r*Vr : (r+1)*Vr] of the full
// [..., V = Vr * tp] and the full logits are never gathered. Per row it all-reduces the maximum,
// then, in one message, the sum of exponentials, the target's logit and (with label smoothing)
// the sum of the logits. The loss is replicated over the group and equals strata::cross_entropy
// of the gathered logits; each rank's gradient is its slice of that op's gradient.
#include <string>

#include "core/tensor.h"
#include "parallel/communicator.h"

namespace strata::parallel {

// logits [..., Vr] (this rank's vocab slice), target integer [...] holding global ids (the same on
// every rank). ignore_index, label_smoothing (PyTorch's) and reduction ("mean", "sum", "none") as
// strata::cross_entropy; a group of one runs strata::cross_entropy itself. Gradient check:
// tests/parallel/tp_cross_entropy_test.cpp (under mpirun).
Tensor vocab_parallel_cross_entropy(const Tensor& logits, const Tensor& target, Communicator& tp,
                                    int64_t ignore_index = -100, double label_smoothing = 0.0,
                                    const std::string& reduction = "mean");

}  // namespace strata::parallel
