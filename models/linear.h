#pragma once
// Linear: y = x W^T + b with W [out, in] (PyTorch's layout, so checkpoints map one to one).
#include "models/module.h"

namespace strata::models {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Init weight_init,
         Init bias_init = Init::zeros());
  Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined when built without bias
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 private:
  int64_t in_, out_;
  Tensor& weight_;
  Tensor no_bias_;
  Tensor& bias_;
};

}  // namespace strata::models
