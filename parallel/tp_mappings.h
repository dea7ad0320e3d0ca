#pragma once
// Megatron's four tensor-parallel mappings (Shoeybi et al. 2019: the f and g operators and their
// split/gather twins) as autograd ops over a tensor-parallel group. Terms: a *replicated* tensor
// has the same value on every rank of the group; a *split* one holds this rank's slice r of the
// last dim (slice size = last dim / group size); a *partial* one is this rank's summand of a
// replicated sum.
//
//   op               forward                           backward (of the gradient)
//   copy_to_tp       replicated -> same, per rank      all-reduce sum
//   reduce_from_tp   partial -> replicated (sum)       identity
//   scatter_to_tp    replicated -> split               all-gather along the last dim
//   gather_from_tp   split -> replicated               keep this rank's slice
//
// Every rank of the group must call the same ops in the same order: the forward passes and the
// backward passes both communicate. `what` names the collective in errors and hang reports
// ("tp.attn.o_proj"); backward collectives append ".grad". With a group of one every op returns
// its input. The backward closures keep a pointer to the communicator, which must outlive the
// graph. Gradient checks: tests/parallel/tp_mappings_test.cpp (under mpirun, they need a group).
#include <string_view>

#include "core/tensor.h"
#include "parallel/communicator.h"

namespace strata::parallel {

Tensor copy_to_tp(const Tensor& x, Communicator& tp, std::string_view what = "tp.copy");
Tensor reduce_from_tp(const Tensor& x, Communicator& tp, std::string_view what = "tp.reduce");
// The last dim must divide by the group size.
Tensor scatter_to_tp(const Tensor& x, Communicator& tp, std::string_view what = "tp.scatter");
Tensor gather_from_tp(const Tensor& x, Communicator& tp, std::string_view what = "tp.gather");

}  // namespace strata::parallel
