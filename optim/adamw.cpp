#include "optim/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "optim/kernels/adam_kernel.h"

namespace strata::optim {
namespace {

// Runs the fused kernel with scalars prepared in double (as the Python references compute them)
// and rounded once to the compute type.
void run_kernel(const std::string& name, Tensor& param, const Tensor& grad,
                std::vector<Tensor>& state, const kernels::AdamScalars<double>& sd) {
  const int64_t n = param.numel();
  Tensor& m = state[0];
  Tensor& v = state[1];
  auto to_f32 = [&] {
    kernels::AdamScalars<float> s;
    s.pre_decay = float(sd.pre_decay);
    s.lerp_m = sd.lerp_m;
    s.b1 = float(sd.b1), s.w1 = float(sd.w1), s.b2 = float(sd.b2), s.w2 = float(sd.w2);
    s.denom_div = float(sd.denom_div), s.eps = float(sd.eps);
    s.neg_step = float(sd.neg_step), s.post_decay = float(sd.post_decay);
    return s;
  };
  switch (param.dtype()) {
    case DType::f32:
      kernels::adam_update(param.data<float>(), grad.data<float>(), m.data<float>(),
                           v.data<float>(), n, to_f32());
      return;
    case DType::f64:
      kernels::adam_update(param.data<double>(), grad.data<double>(), m.data<double>(),
                           v.data<double>(), n, sd);
      return;
    case DType::bf16:
      if (grad.dtype() == DType::bf16)
        kernels::adam_update(param.data<bf16>(), grad.data<bf16>(), m.data<float>(),
                             v.data<float>(), n, to_f32());
      else
        kernels::adam_update(param.data<bf16>(), grad.data<float>(), m.data<float>(),
                             v.data<float>(), n, to_f32());
      return;
    default:
      STRATA_FAIL("optimizer: parameter '", name, "' has non-floating dtype");
  }
}

}  // namespace

AdamW::AdamW(std::vector<ParamGroup> groups) : Optimizer(std::move(groups)) {
  init_state();
}

void AdamW::update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
                   std::vector<Tensor>& state, int64_t step) {
  const double t = double(step);
  const double bc1 = 1.0 - std::pow(h.beta1, t);
  const double bc2 = 1.0 - std::pow(h.beta2, t);
  kernels::AdamScalars<double> s;
  s.pre_decay = 1.0 - h.lr * h.weight_decay;
  s.lerp_m = true;
  s.b1 = h.beta1, s.w1 = 1.0 - h.beta1, s.b2 = h.beta2, s.w2 = 1.0 - h.beta2;
  s.denom_div = std::sqrt(bc2);
  s.eps = h.eps;
  s.neg_step = -(h.lr / bc1);
  s.post_decay = 0.0;
  run_kernel(name, param, grad, state, s);
}

AdamWScale::AdamWScale(std::vector<ParamGroup> groups) : Optimizer(std::move(groups)) {
  init_state();
}

double AdamWScale::rms(const Tensor& param) {
  const int64_t n = param.numel();
  if (n == 0) return 0.0;
  const Tensor p = param.contiguous();
  double ss = 0.0;
  switch (p.dtype()) {
    case DType::f32:
      ss = kernels::sum_squares(p.data<float>(), n);
      break;
    case DType::f64:
      ss = kernels::sum_squares(p.data<double>(), n);
      break;
    case DType::bf16:
      ss = kernels::sum_squares(p.data<bf16>(), n);
      break;
    default:
      STRATA_FAIL("AdamWScale::rms: expected a floating tensor, got ", dtype_name(p.dtype()));
  }
  return std::sqrt(ss) / std::sqrt(double(n));
}

void AdamWScale::update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
                        std::vector<Tensor>& state, int64_t step) {
  const double t = double(step);
  const double bc1 = 1.0 - std::pow(h.beta1, t);
  const double bc2 = 1.0 - std::pow(h.beta2, t);
  double step_size = h.lr * std::sqrt(bc2) / bc1;
  step_size *= std::max(1e-3, param_rms(name, param));
  kernels::AdamScalars<double> s;
  s.pre_decay = 1.0;
  s.lerp_m = false;
  s.b1 = h.beta1, s.w1 = 1.0 - h.beta1, s.b2 = h.beta2, s.w2 = 1.0 - h.beta2;
  s.denom_div = 1.0;
  s.eps = h.eps;
  s.neg_step = -step_size;
  s.post_decay = h.weight_decay > 0.0 ? -(h.lr * h.weight_decay) : 0.0;
  run_kernel(name, param, grad, state, s);
}

}  // namespace strata::optim
