#pragma once
// The dtype dispatch of the element-wise updates that are written once as templates (Lion,
// Sophia-G, Adafactor): the parameter's type P (float, double, bf16), the gradient's G (P or the
// state type) and the compute and state type S (float for float and bf16 parameters, double for
// double ones), as optim::state_dtype chooses. Internal to optim/.
#include <string>

#include "core/bf16.h"
#include "core/error.h"
#include "core/tensor.h"

namespace strata::optim::detail {

// torch.sgn on a real number: -1, 0 or +1 (0 keeps a coordinate whose update direction is exactly
// 0 in place). Lion and Sophia-G step by it.
template <class S>
inline S sgn(S x) {
  return S((x > S(0)) - (x < S(0)));
}

template <class S>
inline S load(float x) {
  return S(x);
}
template <class S>
inline S load(double x) {
  return S(x);
}
template <class S>
inline S load(bf16 x) {
  return S(float(x));
}
inline void store(float& dst, float v) {
  dst = v;
}
inline void store(double& dst, double v) {
  dst = v;
}
inline void store(bf16& dst, float v) {
  dst = bf16(v);
}

// Calls fn(p, g, S{}) with typed pointers to the parameter's and the gradient's data on the
// CPU. `who` names the optimizer in errors.
template <class Fn>
void dispatch_update(const char* who, const std::string& name, Tensor& param, const Tensor& grad,
                     Fn&& fn) {
  STRATA_CHECK(param.device().is_cpu(), who, ": parameter '", name, "' is on ",
               param.device().str(), " but ", who,
               " updates on the CPU only; use optim.name = adamw (or adamwscale) on a GPU");
  switch (param.dtype()) {
    case DType::f32:
      fn(param.data<float>(), grad.data<float>(), float{});
      return;
    case DType::f64:
      fn(param.data<double>(), grad.data<double>(), double{});
      return;
    case DType::bf16:
      if (grad.dtype() == DType::bf16)
        fn(param.data<bf16>(), grad.data<bf16>(), float{});
      else
        fn(param.data<bf16>(), grad.data<float>(), float{});
      return;
    default:
      STRATA_FAIL(who, ": parameter '", name, "' has non-floating dtype ",
                  dtype_name(param.dtype()));
  }
}

// The same dispatch for a parameter on a GPU: fn(p, g, S{}) with typed pointers into device
// memory (for the kernels of optim/kernels/cuda/optim_cuda.h; bf16 as core's bf16).
template <class Fn>
void dispatch_device_update(const char* who, const std::string& name, Tensor& param,
                            const Tensor& grad, Fn&& fn) {
  STRATA_CHECK(grad.device() == param.device(), who, ": parameter '", name, "' is on ",
               param.device().str(), " but its gradient is on ", grad.device().str());
  switch (param.dtype()) {
    case DType::f32:
      fn(static_cast<float*>(param.raw_data()), static_cast<const float*>(grad.raw_data()),
         float{});
      return;
    case DType::f64:
      fn(static_cast<double*>(param.raw_data()), static_cast<const double*>(grad.raw_data()),
         double{});
      return;
    case DType::bf16:
      if (grad.dtype() == DType::bf16)
        fn(static_cast<bf16*>(param.raw_data()), static_cast<const bf16*>(grad.raw_data()),
           float{});
      else
        fn(static_cast<bf16*>(param.raw_data()), static_cast<const float*>(grad.raw_data()),
           float{});
      return;
    default:
      STRATA_FAIL(who, ": parameter '", name, "' has non-floating dtype ",
                  dtype_name(param.dtype()));
  }
}

// Device memory of a state tensor in the compute type S.
template <class S>
S* device_data(Tensor& t) {
  return static_cast<S*>(t.raw_data());
}

// The state tensor's data in the compute type S.
template <class S>
S* state_data(Tensor& t) {
  return t.data<S>();
}

}  // namespace strata::optim::detail
