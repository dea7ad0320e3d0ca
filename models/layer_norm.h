#pragma once
// LayerNorm over the last dim, with an optional bias (crammed BERT keeps it: torch.nn.LayerNorm).
#include "models/module.h"

namespace strata::models {

class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, double eps, bool bias = true);
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined without bias

 private:
  double eps_;
  Tensor& weight_;
  Tensor no_bias_;
  Tensor& bias_;
};

}  // namespace strata::models
