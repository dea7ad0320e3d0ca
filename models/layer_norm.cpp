#include "models/layer_norm.h"

#include "core/ops.h"

namespace strata::models {

LayerNorm::LayerNorm(int64_t dim, double eps, bool bias)
    : Module("LayerNorm"),
      eps_(eps),
      weight_(register_parameter("weight", {dim}, Init::ones())),
      bias_(bias ? register_parameter("bias", {dim}, Init::zeros()) : no_bias_) {}

Tensor LayerNorm::forward(const Tensor& x) const {
  // A bf16 x (a bf16 residual stream) is normalised in f32 against the f32 weight and bias.
  return layer_norm(norm_input(x, weight_), weight_, bias_, eps_);
}

}  // namespace strata::models
