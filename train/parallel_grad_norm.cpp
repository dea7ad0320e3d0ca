#include "train/parallel_grad_norm.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/ops.h"
#include "optim/clip.h"

namespace strata::train {

double clip_parallel_grad_norm(const models::Module& model,
                               const std::vector<Tensor>& tied_replicas,
                               const parallel::Topology& topology, double max_norm) {
  auto is_replica = [&](const Tensor& p) {
    for (const Tensor& t : tied_replicas)
      if (t.is_same(p)) return true;
    return false;
  };
  // One norm per group (one read-back each on a GPU, not one per parameter), each summed in f64
  // in a fixed order.
  std::vector<Tensor> params, split_params, replicated_params;
  for (const auto& [name, p] : model.named_parameters()) {
    params.push_back(p);
    if (is_replica(p)) continue;
    (model.sharding(name).is_replicated() ? replicated_params : split_params).push_back(p);
  }
  const double split_norm = optim::grad_norm(split_params);
  const double replicated_norm = optim::grad_norm(replicated_params);
  const double split = split_norm * split_norm, replicated = replicated_norm * replicated_norm;
  Tensor s = from_vector<double>({split}, {1});
  topology.tp().all_reduce(s, parallel::ReduceOp::Sum, "tp.grad_norm");
  Tensor total = from_vector<double>({s.item<double>() + replicated}, {1});
  topology.pp().all_reduce(total, parallel::ReduceOp::Sum, "pp.grad_norm");
  const double norm = std::sqrt(total.item<double>());
  if (max_norm <= 0 || !std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return norm;
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (g.defined()) g.mul_(coef);
  }
  return norm;
}

}  // namespace strata::train
