#include "core/ops/index.h"

#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/factory.h"
#include "core/ops/shape.h"
#include "core/ops/transfer.h"

namespace strata {

namespace {

Tensor as_index(const Tensor& index, const char* op) {
  STRATA_CHECK(index.dtype() == DType::i64 || index.dtype() == DType::i32, op,
               ": index must be an integer tensor (i32 or i64), got ", dtype_name(index.dtype()));
  return index.to(DType::i64).contiguous();
}

}  // namespace

Tensor index_select(const Tensor& x, int64_t dim, const Tensor& index_in) {
  dim = wrap_dim(dim, x.dim(), "index_select");
  const Tensor index_here = follow_device(index_in, x);
  check_same_device("index_select", "input", x, "index", index_here);
  STRATA_CHECK(index_in.dim() == 1, "index_select: index must be 1-D, got ",
               shape_str(index_in.shape()));
  Tensor index = as_index(index_here, "index_select");
  Shape shape = x.shape();
  shape[dim] = index.numel();
  Tensor out = empty(shape, x.dtype(), x.device());
  backend_for(x.device()).index_select(x, dim, index, out);
  const Shape xs = x.shape();
  autograd::record("index_select", {x}, {&out}, {index},
                   [xs, dim](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                             const std::vector<bool>&) -> std::vector<Tensor> {
                     Tensor gx = zeros(xs, g[0].dtype(), g[0].device());
                     backend_for(gx.device()).index_add(gx, dim, s[0], g[0]);
                     return {gx};
                   });
  return out;
}

Tensor gather(const Tensor& x, int64_t dim, const Tensor& index_in) {
  dim = wrap_dim(dim, x.dim(), "gather");
  const Tensor index_here = follow_device(index_in, x);
  check_same_device("gather", "input", x, "index", index_here);
  Tensor index = as_index(index_here, "gather");
  STRATA_CHECK(index.dim() == x.dim(), "gather: index of rank ", index.dim(), " for input of rank ",
               x.dim());
  for (int64_t d = 0; d < x.dim(); ++d)
    STRATA_CHECK(d == dim || index.shape()[d] <= x.shape()[d], "gather: index shape ",
                 shape_str(index.shape()), " exceeds input ", shape_str(x.shape()), " in dim ", d);
  Tensor out = empty(index.shape(), x.dtype(), x.device());
  backend_for(x.device()).gather(x, dim, index, out);
  const Shape xs = x.shape();
  autograd::record("gather", {x}, {&out}, {index},
                   [xs, dim](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                             const std::vector<bool>&) -> std::vector<Tensor> {
                     Tensor gx = zeros(xs, g[0].dtype(), g[0].device());
                     backend_for(gx.device()).scatter_add(gx, dim, s[0], g[0].contiguous());
                     return {gx};
                   });
  return out;
}

Tensor scatter_add(const Tensor& x, int64_t dim, const Tensor& index_in, const Tensor& src) {
  dim = wrap_dim(dim, x.dim(), "scatter_add");
  const Tensor index_here = follow_device(index_in, x);
  check_same_device("scatter_add", "input", x, "index", index_here);
  check_same_device("scatter_add", "input", x, "src", src);
  Tensor index = as_index(index_here, "scatter_add");
  STRATA_CHECK(index.shape() == src.shape(), "scatter_add: index ", shape_str(index.shape()),
               " and src ", shape_str(src.shape()), " must have the same shape");
  STRATA_CHECK(src.dtype() == x.dtype(), "scatter_add: src is ", dtype_name(src.dtype()),
               ", input is ", dtype_name(x.dtype()));
  for (int64_t d = 0; d < x.dim(); ++d)
    STRATA_CHECK(d == dim || index.shape()[d] <= x.shape()[d], "scatter_add: index shape ",
                 shape_str(index.shape()), " exceeds input ", shape_str(x.shape()), " in dim ", d);
  Tensor out = empty(x.shape(), x.dtype(), x.device());
  Backend& be = backend_for(x.device());
  be.copy(x, out);
  be.scatter_add(out, dim, index, src.contiguous());
  autograd::record("scatter_add", {x, src}, {&out}, {index},
                   [dim](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                         const std::vector<bool>& needs) -> std::vector<Tensor> {
                     Tensor gsrc;
                     if (needs[1]) gsrc = gather(g[0], dim, s[0]);
                     return {g[0], gsrc};
                   });
  return out;
}

Tensor embedding(const Tensor& weight, const Tensor& ids) {
  STRATA_CHECK(weight.dim() == 2, "embedding: weight must be [vocab, dim], got ",
               shape_str(weight.shape()));
  Shape out_shape = ids.shape();
  out_shape.push_back(weight.size(1));
  return reshape(index_select(weight, 0, reshape(ids, {-1})), out_shape);
}

}  // namespace strata
