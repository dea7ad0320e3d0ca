// dropout: the mask is recomputed from Philox in backward, so nothing but the key is saved.
#include "core/autograd/node.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"

namespace strata {

Tensor dropout(const Tensor& x, double p, RandomKey key, bool training) {
  STRATA_CHECK(p >= 0 && p < 1, "dropout: probability must be in [0, 1), got ", p);
  if (!training || p == 0) return x;
  STRATA_CHECK(is_floating(x.dtype()), "dropout: expected a floating tensor, got ",
               dtype_name(x.dtype()));
  Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).dropout(xc, p, key, y);
  autograd::record("dropout", {xc}, {&y}, {},
                   [p, key](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                            const std::vector<bool>&) -> std::vector<Tensor> {
                     Tensor dx = empty(g[0].shape(), g[0].dtype(), g[0].device());
                     backend_for(dx.device()).dropout(g[0].contiguous(), p, key, dx);
                     return {dx};
                   });
  return y;
}

}  // namespace strata
