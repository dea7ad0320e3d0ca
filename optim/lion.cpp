#include "optim/lion.h"

#include <algorithm>

#include "optim/typed_update.h"

#ifdef STRATA_HAS_CUDA
#include "optim/kernels/cuda/optim_cuda.h"
#endif

namespace strata::optim {

Lion::Lion(std::vector<ParamGroup> groups, bool rms_scale)
    : Optimizer(std::move(groups)), rms_scale_(rms_scale) {
  init_state();
}

void Lion::update_on_gpu(const Hyper& h, double lr, const std::string& name, Tensor& param,
                         const Tensor& grad, std::vector<Tensor>& state) {
#ifdef STRATA_HAS_CUDA
  const int64_t n = param.numel();
  const int dev = param.device().index;
  detail::dispatch_device_update(
      "lion", name, param, grad, [&](auto* p, const auto* g, auto s_tag) {
        using S = decltype(s_tag);
        kernels::cuda::SignScalars<S> s;
        s.decay = S(1.0 - lr * h.weight_decay);
        s.decays = h.weight_decay != 0.0;
        s.b1 = S(h.beta1), s.w1 = S(1.0 - h.beta1), s.b2 = S(h.beta2), s.w2 = S(1.0 - h.beta2);
        s.neg_lr = S(-lr);
        kernels::cuda::lion_update(dev, p, g, detail::device_data<S>(state[0]), n, s);
      });
#else
  (void)h, (void)lr, (void)grad, (void)state;
  STRATA_FAIL("lion: parameter '", name, "' is on ", param.device().str(),
              " but this Strata was built without CUDA (-DSTRATA_CUDA=ON)");
#endif
}

void Lion::update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
                  std::vector<Tensor>& state, int64_t /*step*/) {
  const double lr = rms_scale_ ? h.lr * std::max(1e-3, param_rms(name, param)) : h.lr;
  const int64_t n = param.numel();
  if (!param.device().is_cpu()) {
    update_on_gpu(h, lr, name, param, grad, state);
    return;
  }
  detail::dispatch_update("lion", name, param, grad, [&](auto* p, const auto* g, auto s_tag) {
    using S = decltype(s_tag);
    S* m = detail::state_data<S>(state[0]);
    // The scalars as lion-pytorch forms them: Python floats rounded once to the tensor type.
    const S decay = S(1.0 - lr * h.weight_decay);
    const S b1 = S(h.beta1), w1 = S(1.0 - h.beta1), b2 = S(h.beta2), w2 = S(1.0 - h.beta2);
    const S neg_lr = S(-lr);
    const bool decays = h.weight_decay != 0.0;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) {
      const S gi = detail::load<S>(g[i]);
      S pi = detail::load<S>(p[i]);
      if (decays) pi = pi * decay;
      const S c = m[i] * b1 + w1 * gi;
      pi = pi + neg_lr * detail::sgn(c);
      m[i] = m[i] * b2 + w2 * gi;
      detail::store(p[i], pi);
    }
  });
}

}  // namespace strata::optim
