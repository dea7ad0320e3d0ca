#include "optim/adamw.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "optim/device_reduce.h"
#include "optim/kernels/adam_kernel.h"

#ifdef STRATA_HAS_CUDA
#include "optim/kernels/cuda/optim_cuda.h"
#endif

namespace strata::optim {
namespace {

kernels::AdamScalars<float> to_f32(const kernels::AdamScalars<double>& sd) {
  kernels::AdamScalars<float> s;
  s.pre_decay = float(sd.pre_decay);
  s.lerp_m = sd.lerp_m;
  s.b1 = float(sd.b1), s.w1 = float(sd.w1), s.b2 = float(sd.b2), s.w2 = float(sd.w2);
  s.denom_div = float(sd.denom_div), s.eps = float(sd.eps);
  s.neg_step = float(sd.neg_step), s.post_decay = float(sd.post_decay);
  return s;
}

// Device memory is reached through raw_data (data<T>() is for CPU memory); the dtype switch of
// the callers has checked T.
template <class T>
T* dev_ptr(const Tensor& t) {
  return static_cast<T*>(t.raw_data());
}

// The update of a parameter on a GPU: the same fused formula, one kernel launch.
void run_cuda_kernel(const std::string& name, Tensor& param, const Tensor& grad,
                     std::vector<Tensor>& state, const kernels::AdamScalars<double>& sd) {
  const Device d = param.device();
  for (const Tensor& t : {grad, state[0], state[1]})
    STRATA_CHECK(t.device() == d, "optimizer: parameter '", name, "' is on ", d.str(),
                 " but its gradient or state is on ", t.device().str());
#ifdef STRATA_HAS_CUDA
  const int64_t n = param.numel();
  const int dev = d.index;
  Tensor& m = state[0];
  Tensor& v = state[1];
  namespace kc = kernels::cuda;
  switch (param.dtype()) {
    case DType::f32:
      kc::adam_update(dev, dev_ptr<float>(param), dev_ptr<float>(grad), dev_ptr<float>(m),
                      dev_ptr<float>(v), n, to_f32(sd));
      return;
    case DType::f64:
      kc::adam_update(dev, dev_ptr<double>(param), dev_ptr<double>(grad), dev_ptr<double>(m),
                      dev_ptr<double>(v), n, sd);
      return;
    case DType::bf16:
      if (grad.dtype() == DType::bf16)
        kc::adam_update(dev, dev_ptr<bf16>(param), dev_ptr<bf16>(grad), dev_ptr<float>(m),
                        dev_ptr<float>(v), n, to_f32(sd));
      else
        kc::adam_update(dev, dev_ptr<bf16>(param), dev_ptr<float>(grad), dev_ptr<float>(m),
                        dev_ptr<float>(v), n, to_f32(sd));
      return;
    default:
      STRATA_FAIL("optimizer: parameter '", name, "' has non-floating dtype");
  }
#else
  (void)sd;
  STRATA_FAIL("optimizer: parameter '", name, "' is on ", d.str(),
              " but this Strata was built without CUDA (-DSTRATA_CUDA=ON)");
#endif
}

// Runs the fused kernel with scalars prepared in double (as the Python references compute them)
// and rounded once to the compute type.
void run_kernel(const std::string& name, Tensor& param, const Tensor& grad,
                std::vector<Tensor>& state, const kernels::AdamScalars<double>& sd) {
  if (!param.device().is_cpu()) {
    run_cuda_kernel(name, param, grad, state, sd);
    return;
  }
  const int64_t n = param.numel();
  Tensor& m = state[0];
  Tensor& v = state[1];
  switch (param.dtype()) {
    case DType::f32:
      kernels::adam_update(param.data<float>(), grad.data<float>(), m.data<float>(),
                           v.data<float>(), n, to_f32(sd));
      return;
    case DType::f64:
      kernels::adam_update(param.data<double>(), grad.data<double>(), m.data<double>(),
                           v.data<double>(), n, sd);
      return;
    case DType::bf16:
      if (grad.dtype() == DType::bf16)
        kernels::adam_update(param.data<bf16>(), grad.data<bf16>(), m.data<float>(),
                             v.data<float>(), n, to_f32(sd));
      else
        kernels::adam_update(param.data<bf16>(), grad.data<float>(), m.data<float>(),
                             v.data<float>(), n, to_f32(sd));
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
