#include "optim/sophia.h"

#include <algorithm>
#include <cmath>

#include "core/ops.h"
#include "optim/typed_update.h"

#ifdef STRATA_HAS_CUDA
#include "optim/kernels/cuda/optim_cuda.h"
#endif

namespace strata::optim {

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
    device_unclipped_ = Tensor();
  }
  const double lr = o_.rms_scale ? h.lr * std::max(1e-3, param_rms(name, param)) : h.lr;
  const int64_t n = param.numel();
  if (!param.device().is_cpu()) {
    update_on_gpu(h, lr, name, param, grad, state);
    counted_ += n;
    return;
  }
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
      pi = pi + neg_lr * detail::sgn(m[i]) * std::min(ratio, one);
      detail::store(p[i], pi);
    }
  });
  unclipped_ += unclipped;
  counted_ += n;
}

void Sophia::update_on_gpu(const Hyper& h, double lr, const std::string& name, Tensor& param,
                           const Tensor& grad, std::vector<Tensor>& state) {
#ifdef STRATA_HAS_CUDA
  const int64_t n = param.numel();
  const int dev = param.device().index;
  detail::dispatch_device_update(
      "sophiag", name, param, grad, [&](auto* p, const auto* g, auto s_tag) {
        using S = decltype(s_tag);
        kernels::cuda::SignScalars<S> s;
        s.decay = S(1.0 - lr * h.weight_decay);
        s.b1 = S(h.beta1), s.w1 = S(1.0 - h.beta1);
        s.rho_b = S(o_.rho * o_.batch_tokens), s.tiny = S(1e-15);
        s.neg_lr = S(-lr);
        kernels::cuda::sophia_update(dev, p, g, detail::device_data<S>(state[0]),
                                     detail::device_data<S>(state[1]), n, s);
      });
  // The win rate from the updated state, summed on the device and read back only when asked
  // (unclipped_count): no host sync per parameter and step.
  NoGradGuard no_grad;
  const Tensor ratio = div(abs(state[0]), state[1] * (o_.rho * o_.batch_tokens) + 1e-15);
  const Tensor c =
      sum(lt(ratio, full(ratio.shape(), 1.0, ratio.dtype(), ratio.device()))).to(DType::f64);
  device_unclipped_ = device_unclipped_.defined() ? device_unclipped_ + c : c;
#else
  (void)h, (void)lr, (void)grad, (void)state;
  STRATA_FAIL("sophiag: parameter '", name, "' is on ", param.device().str(),
              " but this Strata was built without CUDA (-DSTRATA_CUDA=ON)");
#endif
}

int64_t Sophia::unclipped_count() const {
  if (device_unclipped_.defined()) {
    unclipped_ += int64_t(device_unclipped_.to(Device::cpu()).item<double>());
    device_unclipped_ = Tensor();
  }
  return unclipped_;
}

namespace {

// h = b2*h + (1-b2)*g*g on the GPU (a kernel with the CPU loop's rounding).
void hessian_on_gpu(const Hyper& h, const NamedParam& np, const Tensor& grad, Tensor& hess) {
#ifdef STRATA_HAS_CUDA
  const int64_t n = np.param.numel();
  const int dev = np.param.device().index;
  switch (grad.dtype()) {
    case DType::f32:
      kernels::cuda::sophia_hessian(dev, detail::device_data<float>(hess),
                                    static_cast<const float*>(grad.raw_data()), n, float(h.beta2),
                                    float(1.0 - h.beta2));
      return;
    case DType::f64:
      kernels::cuda::sophia_hessian(dev, detail::device_data<double>(hess),
                                    static_cast<const double*>(grad.raw_data()), n, h.beta2,
                                    1.0 - h.beta2);
      return;
    case DType::bf16:
      kernels::cuda::sophia_hessian(dev, detail::device_data<float>(hess),
                                    static_cast<const bf16*>(grad.raw_data()), n, float(h.beta2),
                                    float(1.0 - h.beta2));
      return;
    default:
      STRATA_FAIL("sophiag: gradient of '", np.name, "' has non-floating dtype");
  }
#else
  (void)h, (void)grad, (void)hess;
  STRATA_FAIL("sophiag: parameter '", np.name, "' is on ", np.param.device().str(),
              " but this Strata was built without CUDA (-DSTRATA_CUDA=ON)");
#endif
}

}  // namespace

void Sophia::update_hessian() {
  for_each_with_grad(
      [&](const Hyper& h, NamedParam& np, const Tensor& grad, std::vector<Tensor>& state) {
        if (!np.param.device().is_cpu()) {
          hessian_on_gpu(h, np, grad, state[1]);
          return;
        }
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
