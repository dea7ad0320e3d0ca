#pragma once
// Linear: y = x W^T + b with W [out, in] (PyTorch's layout, so checkpoints map one to one).
#include <string>

#include "models/module.h"

namespace strata::models {

class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Init weight_init,
         Init bias_init = Init::zeros());
  // Virtual for the tensor-parallel layers (models/tp_linear.h).
  virtual Tensor forward(const Tensor& x) const;
  const Tensor& weight() const { return weight_; }
  const Tensor& bias() const { return bias_; }  // undefined when built without bias
  // The global sizes (a tensor-parallel shard holds a slice of one of them).
  int64_t in_features() const { return in_; }
  int64_t out_features() const { return out_; }

 protected:
  // For tensor-parallel layers: the weight and bias hold these slices of [out, in] and [out].
  Linear(std::string type, int64_t in_features, int64_t out_features, bool bias, Init weight_init,
         Init bias_init, const Sharding& weight_split, const Sharding& bias_split);

 private:
  int64_t in_, out_;
  Tensor& weight_;
  Tensor no_bias_;
  Tensor& bias_;
};

}  // namespace strata::models
