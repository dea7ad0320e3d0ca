#pragma once
// RMSNorm (Zhang & Sennrich 2019): x / sqrt(mean(x^2) + eps) * weight, over the last dim.
#include "models/module.h"

namespace strata::models {

class RMSNorm : public Module {
 public:
  RMSNorm(int64_t dim, double eps);
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }
  double eps() const { return eps_; }

 private:
  double eps_;
  Tensor& weight_;
};

}  // namespace strata::models
