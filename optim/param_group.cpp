#include "optim/param_group.h"

#include <algorithm>
#include <cctype>

namespace strata::optim {

bool no_decay(const std::string& name, const Tensor& param) {
  if (param.defined() && param.dim() <= 1) return true;
  std::string lower = name;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  // Substring matches, as the references' `any(nd in name for nd in no_decay)`: nanoT5's "bias"
  // exempts relative_attention_bias (our rel_bias.weight) too.
  return lower.find("norm") != std::string::npos || lower.find("bias") != std::string::npos;
}

std::vector<ParamGroup> make_param_groups(const std::vector<NamedParam>& params, const Hyper& h) {
  ParamGroup decayed{{}, h};
  ParamGroup plain{{}, h};
  plain.hyper.weight_decay = 0.0;
  for (const NamedParam& np : params)
    (no_decay(np.name, np.param) ? plain : decayed).params.push_back(np);
  std::vector<ParamGroup> groups;
  if (!decayed.params.empty()) groups.push_back(std::move(decayed));
  if (!plain.params.empty()) groups.push_back(std::move(plain));
  return groups;
}

}  // namespace strata::optim
