#include "core/autograd/recompute.h"

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"

namespace strata {

Tensor recompute(const RecomputeFn& fn, const std::vector<Tensor>& inputs) {
  Tensor out;
  {
    NoGradGuard no_grad;
    out = fn(inputs);
  }
  // The region's output is a fresh buffer owned here, not a view of an input.
  out = out.detach();
  autograd::record("recompute", inputs, {&out}, inputs,
                   [fn](const std::vector<Tensor>& g, const std::vector<Tensor>& saved,
                        const std::vector<bool>& needs) -> std::vector<Tensor> {
                     std::vector<Tensor> fresh;
                     fresh.reserve(saved.size());
                     for (size_t i = 0; i < saved.size(); ++i) {
                       Tensor t = saved[i].defined() ? saved[i].detach() : saved[i];
                       if (needs[i]) t.set_requires_grad(true);
                       fresh.push_back(t);
                     }
                     EnableGradGuard grad_on;
                     Tensor y = fn(fresh);
                     if (y.requires_grad()) autograd::run_backward({y}, {g[0]});
                     std::vector<Tensor> grads(saved.size());
                     for (size_t i = 0; i < saved.size(); ++i)
                       if (needs[i]) grads[i] = fresh[i].grad();
                     return grads;
                   });
  return out;
}

}  // namespace strata
