#pragma once
// Parameter groups: named parameters sharing one set of hyperparameters, and the name rule that
// splits a model's parameters into a decayed and a non-decayed group.
#include <string>
#include <vector>

#include "core/tensor.h"

namespace strata::optim {

struct NamedParam {
  std::string name;  // full dotted name, the checkpoint key ("decoder.layers.0.attn.wq.weight")
  Tensor param;
};

struct Hyper {
  double lr = 1e-3;
  double weight_decay = 0.0;
  double beta1 = 0.9;
  double beta2 = 0.999;
  double eps = 1e-8;
};

struct ParamGroup {
  std::vector<NamedParam> params;
  Hyper hyper;
};

// True for parameters that take no weight decay. The rule (any one suffices):
//   1. the parameter has at most one dimension (biases, norm gains, learnable scalars);
//   2. its lower-cased name contains "norm" (LayerNorm / RMSNorm / layer_norm / final_norm);
//   3. its lower-cased name contains "bias" (linear biases, and T5's relative position bias
//      table rel_bias.weight, which nanoT5's substring rule exempts as relative_attention_bias).
// Crammed BERT ("bias", "LayerNorm") and nanoT5 ("bias", "LayerNorm", "layernorm", "layer_norm",
// "ln") match substrings of the name; on our models' names (none contains "ln") these rules pick
// the same parameters. Rule 1 also covers names we do not foresee.
bool no_decay(const std::string& name, const Tensor& param);

// Two groups in this order: {decayed params, weight_decay = h.weight_decay} and {no_decay params,
// weight_decay = 0}; both carry the other hyperparameters of `h`. Empty groups are dropped.
// The order of parameters inside each group follows `params`.
std::vector<ParamGroup> make_param_groups(const std::vector<NamedParam>& params, const Hyper& h);

}  // namespace strata::optim
