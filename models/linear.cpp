#include "models/linear.h"

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

Linear::Linear(int64_t in_features, int64_t out_features, bool bias, Init weight_init,
               Init bias_init)
    : Linear("Linear", in_features, out_features, bias, weight_init, bias_init,
             Sharding::replicated({out_features, in_features}),
             Sharding::replicated({out_features})) {}

Linear::Linear(std::string type, int64_t in_features, int64_t out_features, bool bias,
               Init weight_init, Init bias_init, const Sharding& weight_split,
               const Sharding& bias_split)
    : Module(std::move(type)),
      in_(in_features),
      out_(out_features),
      weight_(register_sharded_parameter("weight", weight_split, weight_init)),
      bias_(bias ? register_sharded_parameter("bias", bias_split, bias_init) : no_bias_) {
  STRATA_CHECK(in_features > 0 && out_features > 0, "Linear: sizes must be positive, got in ",
               in_features, ", out ", out_features);
}

Tensor Linear::forward(const Tensor& x) const {
  STRATA_CHECK(x.dim() >= 1 && x.size(-1) == in_, "Linear: input ", shape_str(x.shape()),
               " does not end in ", in_);
  return mixed_linear(precision(), x, weight_, bias_);
}

}  // namespace strata::models
