#include "models/rms_norm.h"

#include "core/ops.h"

namespace strata::models {

RMSNorm::RMSNorm(int64_t dim, double eps)
    : Module("RMSNorm"), eps_(eps), weight_(register_parameter("weight", {dim}, Init::ones())) {}

Tensor RMSNorm::forward(const Tensor& x) const {
  // A bf16 x (a bf16 residual stream) is normalised in f32 against the f32 weight.
  return rms_norm(norm_input(x, weight_), weight_, eps_);
}

}  // namespace strata::models
