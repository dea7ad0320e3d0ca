#include "parallel/tp_mappings.h"

#include <string>

#include "core/autograd/node.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/ops/registry.h"

namespace strata::parallel {

namespace {

// The mappings' names in the op registry, registered here beside the code that records them; their
// gradient checks run under mpirun (tests/parallel/tp_ops_mpitest.cpp).
const OpFamilyRegistration registration(kTensorParallelOps, {"copy_to_tp", "reduce_from_tp",
                                                             "scatter_to_tp", "gather_from_tp"});

using Tensors = std::vector<Tensor>;
using Needs = std::vector<bool>;

// A fresh contiguous copy: collectives write in place, and the tensor handed to a backward
// function may be shared with other consumers of the same gradient.
Tensor owned_copy(const Tensor& t) {
  return t.detach().clone();
}

Tensor all_gather_last(Communicator& tp, const Tensor& t, const std::string& what) {
  return tp.all_gather(t.detach().contiguous(), t.dim() - 1, what);
}

Tensor own_slice_last(const Communicator& tp, const Tensor& t, const char* op) {
  STRATA_CHECK(t.dim() >= 1 && t.size(-1) % tp.size() == 0, op, ": the last dim of ",
               shape_str(t.shape()), " is not divisible by the tensor-parallel size ", tp.size());
  const int64_t n = t.size(-1) / tp.size();
  return t.detach().narrow(t.dim() - 1, tp.rank() * n, n).contiguous();
}

}  // namespace

Tensor copy_to_tp(const Tensor& x, Communicator& tp, std::string_view what) {
  if (tp.size() == 1) return x;
  Tensor y = x.detach();
  autograd::record("copy_to_tp", {x}, {&y}, {},
                   [comm = &tp, name = std::string(what) + ".grad"](
                       const Tensors& g, const Tensors&, const Needs&) -> Tensors {
                     Tensor d = owned_copy(g[0]);
                     comm->all_reduce(d, ReduceOp::Sum, name);
                     return {d};
                   });
  return y;
}

Tensor reduce_from_tp(const Tensor& x, Communicator& tp, std::string_view what) {
  if (tp.size() == 1) return x;
  Tensor y = owned_copy(x);
  tp.all_reduce(y, ReduceOp::Sum, what);
  autograd::record(
      "reduce_from_tp", {x}, {&y}, {},
      [](const Tensors& g, const Tensors&, const Needs&) -> Tensors { return {g[0]}; });
  return y;
}

Tensor scatter_to_tp(const Tensor& x, Communicator& tp, std::string_view what) {
  if (tp.size() == 1) return x;
  Tensor y = own_slice_last(tp, x, "scatter_to_tp");
  autograd::record("scatter_to_tp", {x}, {&y}, {},
                   [comm = &tp, name = std::string(what) + ".grad"](
                       const Tensors& g, const Tensors&, const Needs&) -> Tensors {
                     return {all_gather_last(*comm, g[0], name)};
                   });
  return y;
}

Tensor gather_from_tp(const Tensor& x, Communicator& tp, std::string_view what) {
  if (tp.size() == 1) return x;
  STRATA_CHECK(x.dim() >= 1, "gather_from_tp: expected a tensor with a last dim, got a scalar");
  Tensor y = all_gather_last(tp, x, std::string(what));
  autograd::record("gather_from_tp", {x}, {&y}, {},
                   [comm = &tp](const Tensors& g, const Tensors&, const Needs&) -> Tensors {
                     return {own_slice_last(*comm, g[0], "gather_from_tp backward")};
                   });
  return y;
}

}  // namespace strata::parallel
