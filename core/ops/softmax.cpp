// softmax and log_softmax: fused row kernels over the last dim; other dims are moved last.
#include "core/autograd/node.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"
#include "core/ops/shape.h"

namespace strata {

namespace {

Tensor softmax_impl(const Tensor& x, int64_t dim, bool log) {
  const char* name = log ? "log_softmax" : "softmax";
  STRATA_CHECK(is_floating(x.dtype()), name, ": expected a floating tensor, got ",
               dtype_name(x.dtype()));
  dim = wrap_dim(dim, x.dim(), name);
  if (x.dim() > 0 && dim != x.dim() - 1)
    return transpose(softmax_impl(transpose(x, dim, -1), -1, log), dim, -1);
  Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).softmax(xc.detach(), y, log);
  autograd::record(name, {xc}, {&y}, {y},
                   [log](const std::vector<Tensor>& g, const std::vector<Tensor>& s,
                         const std::vector<bool>&) -> std::vector<Tensor> {
                     Tensor dx = empty(s[0].shape(), s[0].dtype(), s[0].device());
                     backend_for(dx.device()).softmax_backward(s[0], g[0].contiguous(), dx, log);
                     return {dx};
                   });
  return y;
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  return softmax_impl(x, dim, false);
}
Tensor log_softmax(const Tensor& x, int64_t dim) {
  return softmax_impl(x, dim, true);
}

}  // namespace strata
