// rope: rotary position embedding; backward is the rotation by -theta.
#include "core/autograd/node.h"
#include "core/ops/factory.h"
#include "core/ops/nn.h"

namespace strata {

Tensor rope(const Tensor& x, double base, int64_t pos_offset) {
  STRATA_CHECK(is_floating(x.dtype()) && x.dim() >= 2,
               "rope: expected a floating tensor [..., L, D], got ", shape_str(x.shape()), " ",
               dtype_name(x.dtype()));
  STRATA_CHECK(x.size(-1) % 2 == 0, "rope: head dim must be even, got ", x.size(-1));
  STRATA_CHECK(pos_offset >= 0, "rope: negative position offset ", pos_offset);
  Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), x.dtype(), x.device());
  backend_for(x.device()).rope(xc, base, pos_offset, false, y);
  autograd::record("rope", {xc}, {&y}, {},
                   [base, pos_offset](const std::vector<Tensor>& g, const std::vector<Tensor>&,
                                      const std::vector<bool>&) -> std::vector<Tensor> {
                     Tensor dx = empty(g[0].shape(), g[0].dtype(), g[0].device());
                     backend_for(dx.device()).rope(g[0].contiguous(), base, pos_offset, true, dx);
                     return {dx};
                   });
  return y;
}

}  // namespace strata
