#include "optim/sophia.h"

#include <algorithm>
#include <cmath>

#include "optim/typed_update.h"

namespace strata::optim {

namespace {

template <class S>
S sgn(S x) {
  return S((x > S(0)) - (x < S(0)));
}

}  // namespace

Sophia::Sophia(std::vector<ParamGroup> groups, const SophiaOptions& options)
    : Optimizer(std::move(groups)), o_(options) {
  STRATA_CHECK(o_.rho > 0 && std::isfinite(o_.rho), "sophiag: rho must be > 0, got ", o_.rho,
               " (set optim.rho; the reference uses 0.04, NTNG's T5 0.01)");
  STRATA_CHECK(o_.batch_tokens > 0 && std::isfinite(o_.batch_tokens),
               "sophiag: the Hessian batch size B must be > 0, got ", o_.batch_tokens,
               " (set optim.hessian_batch_tokens)");
  init_state();
}

void Sophia::update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
                    std::vector<Tensor>& state, int64_t /*step*/) {
  // A new step() starts fresh win-rate counts.
  if (counted_at_step_ != step_count()) {
    counted_at_step_ = step_count();
    unclipped_ = counted_ = 0;
  }
  const double lr = o_.rms_scale ? h.lr * std::max(1e-3, param_rms(name, param)) : h.lr;
  const int64_t n = param.numel();
  int64_t unclipped = 0;
  detail::dispatch_update("sophiag", name, param, grad, [&](auto* p, const auto* g, auto s_tag) {
    using S = decltype(s_tag);
    S* m = detail::state_data<S>(state[0]);
    const S* hess = detail::state_data<S>(state[1]);
    // As sophia.py: (1 - lr*wd) and rho*bs are Python floats, rounded once to the tensor type.
    const S decay = S(1.0 - lr * h.weight_decay);
    const S b1 = S(h.beta1), w1 = S(1.0 - h.beta1);
    const S rho_b = S(o_.rho * o_.batch_tokens);
    const S tiny = S(1e-15), one = S(1);
    const S neg_lr = S(-lr);
#pragma omp parallel for schedule(static) reduction(+ : unclipped)
    for (int64_t i = 0; i < n; ++i) {
      S pi = detail::load<S>(p[i]) * decay;
      m[i] = m[i] * b1 + w1 * detail::load<S>(g[i]);
      const S ratio = std::abs(m[i]) / (rho_b * hess[i] + tiny);
      unclipped += ratio < one;
      pi = pi + neg_lr * sgn(m[i]) * std::min(ratio, one);
      detail::store(p[i], pi);
    }
  });
  unclipped_ += unclipped;
  counted_ += n;
}

void Sophia::update_hessian() {
  for_each_with_grad(
      [&](const Hyper& h, NamedParam& np, const Tensor& grad, std::vector<Tensor>& state) {
        const int64_t n = np.param.numel();
        detail::dispatch_update("sophiag", np.name, np.param, grad,
                                [&](auto* /*p*/, const auto* g, auto s_tag) {
                                  using S = decltype(s_tag);
                                  S* hess = detail::state_data<S>(state[1]);
                                  const S b2 = S(h.beta2), w2 = S(1.0 - h.beta2);
#pragma omp parallel for schedule(static)
                                  for (int64_t i = 0; i < n; ++i) {
                                    const S gi = detail::load<S>(g[i]);
                                    hess[i] = hess[i] * b2 + w2 * gi * gi;
                                  }
                                });
      });
}

}  // namespace strata::optim
