#include "core/ops/reduce.h"

#include <cmath>

#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/shape.h"

namespace strata {

namespace {

Shape kept_shape(const Shape& in, const std::vector<int64_t>& dims) {
  Shape s = in;
  for (int64_t d : dims) s[d] = 1;
  return s;
}

Shape dropped_shape(const Shape& in, const std::vector<int64_t>& dims) {
  Shape s;
  for (int64_t i = 0; i < int64_t(in.size()); ++i)
    if (std::find(dims.begin(), dims.end(), i) == dims.end()) s.push_back(in[i]);
  return s;
}

Tensor reduce_raw(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims,
                  const char* name) {
  if (op == ReduceOp::Max || op == ReduceOp::Min)
    for (int64_t d : dims)
      STRATA_CHECK(x.shape()[d] > 0, name, ": reducing an empty dim ", d, " of ",
                   shape_str(x.shape()));
  DType dt = x.dtype() == DType::b8 ? DType::i64 : x.dtype();
  if (op == ReduceOp::Mean)
    STRATA_CHECK(is_floating(dt), name, ": expected a floating tensor, got ", dtype_name(dt));
  Tensor src = x.dtype() == DType::b8 ? x.to(DType::i64) : x;
  Tensor out = empty(kept_shape(x.shape(), dims), dt, x.device());
  backend_for(x.device()).reduce(op, src, dims, out);
  return out;
}

Tensor finish(const Tensor& out_keep, const Shape& in_shape, const std::vector<int64_t>& dims,
              bool keepdim) {
  return keepdim ? out_keep : reshape(out_keep, dropped_shape(in_shape, dims));
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  const auto dims = normalize_dims(dims_in, x.dim(), "sum");
  Tensor out = reduce_raw(ReduceOp::Sum, x, dims, "sum");
  const Shape in_shape = x.shape();
  autograd::record("sum", {x}, {&out}, {},
                   [in_shape](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                              const std::vector<bool>&) -> std::vector<Tensor> {
                     return {broadcast_to(g[0], in_shape)};
                   });
  return finish(out, in_shape, dims, keepdim);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  const auto dims = normalize_dims(dims_in, x.dim(), "mean");
  Tensor out = reduce_raw(ReduceOp::Mean, x, dims, "mean");
  const Shape in_shape = x.shape();
  int64_t count = 1;
  for (int64_t d : dims) count *= in_shape[d];
  autograd::record("mean", {x}, {&out}, {},
                   [in_shape, count](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                                     const std::vector<bool>&) -> std::vector<Tensor> {
                     return {broadcast_to(g[0] * (1.0 / double(count)), in_shape)};
                   });
  return finish(out, in_shape, dims, keepdim);
}

static Tensor extremum(ReduceOp op, const Tensor& x, const std::vector<int64_t>& dims_in,
                       bool keepdim, const char* name) {
  const auto dims = normalize_dims(dims_in, x.dim(), name);
  Tensor out = reduce_raw(op, x, dims, name);
  const Shape in_shape = x.shape();
  autograd::record(name, {x}, {&out}, {x, out},
                   [dims](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                          const std::vector<bool>&) -> std::vector<Tensor> {
                     Tensor mask = eq(s[0], s[1]).to(g[0].dtype());
                     Tensor count = sum(mask, dims, true);
                     return {mask * (g[0] / count)};
                   });
  return finish(out, in_shape, dims, keepdim);
}

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extremum(ReduceOp::Max, x, dims, keepdim, "amax");
}
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extremum(ReduceOp::Min, x, dims, keepdim, "amin");
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  dim = wrap_dim(dim, x.dim(), "argmax");
  STRATA_CHECK(x.shape()[dim] > 0, "argmax: dim ", dim, " of ", shape_str(x.shape()), " is empty");
  Tensor out = empty(kept_shape(x.shape(), {dim}), DType::i64, x.device());
  backend_for(x.device()).argmax(x, dim, out);
  return finish(out, x.shape(), {dim}, keepdim);
}

Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  const auto dims = normalize_dims(dims_in, x.dim(), "logsumexp");
  // Shifting by the (detached) max keeps exp in range; its gradient contribution is exactly zero.
  Tensor m = amax(x.detach(), dims, true);
  Tensor finite_m = where(eq(abs(m), full({}, INFINITY, m.dtype(), m.device())),
                          zeros({}, m.dtype(), m.device()), m);
  Tensor out = log(sum(exp(x - finite_m), dims, true)) + finite_m;
  return finish(out, x.shape(), dims, keepdim);
}

Tensor norm(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return sqrt(sum(square(x), dims, keepdim));
}

Tensor cumsum(const Tensor& x, int64_t dim) {
  dim = wrap_dim(dim, x.dim(), "cumsum");
  Tensor out = empty(x.shape(), x.dtype() == DType::b8 ? DType::i64 : x.dtype(), x.device());
  backend_for(x.device()).cumsum(x.dtype() == DType::b8 ? x.to(DType::i64) : x, dim, false, out);
  autograd::record("cumsum", {x}, {&out}, {},
                   [dim](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                         const std::vector<bool>&) -> std::vector<Tensor> {
                     Tensor gx = empty(g[0].shape(), g[0].dtype(), g[0].device());
                     backend_for(gx.device()).cumsum(g[0], dim, true, gx);
                     return {gx};
                   });
  return out;
}

Tensor sum_to(const Tensor& g, const Shape& shape) {
  if (g.shape() == shape) return g;
  const int64_t lead = g.dim() - int64_t(shape.size());
  STRATA_CHECK(lead >= 0, "sum_to: cannot sum ", shape_str(g.shape()), " to larger rank ",
               shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < g.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1)) dims.push_back(i);
  Tensor s = dims.empty() ? g : sum(g, dims, true);
  return reshape(s, shape);
}

}  // namespace strata
