#include "models/rms_norm.h"

#include "core/ops.h"

namespace strata::models {

RMSNorm::RMSNorm(int64_t dim, double eps)
    : Module("RMSNorm"), eps_(eps), weight_(register_parameter("weight", {dim}, Init::ones())) {}

Tensor RMSNorm::forward(const Tensor& x) const {
  return rms_norm(x, weight_, eps_);
}

}  // namespace strata::models
