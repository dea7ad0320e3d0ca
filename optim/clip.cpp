#include "optim/clip.h"

#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "optim/device_reduce.h"
#include "optim/kernels/adam_kernel.h"
#include "optim/optimizer.h"

namespace strata::optim {
namespace {

double grad_sum_squares(const Tensor& g) {
  const Tensor c = g.contiguous();
  const int64_t n = c.numel();
  switch (c.dtype()) {
    case DType::f32:
      return kernels::sum_squares(c.data<float>(), n);
    case DType::f64:
      return kernels::sum_squares(c.data<double>(), n);
    case DType::bf16:
      return kernels::sum_squares(c.data<bf16>(), n);
    default:
      STRATA_FAIL("clip_grad_norm: gradients must be floating, got ", dtype_name(c.dtype()));
  }
}

std::vector<Tensor> defined_grads(const std::vector<Tensor>& params) {
  std::vector<Tensor> out;
  for (const Tensor& p : params)
    if (Tensor g = p.grad(); g.defined()) out.push_back(g);
  return out;
}

// Whether the gradients are on a GPU (then all on one device; device_reduce checks that).
bool on_gpu(const std::vector<Tensor>& grads) {
  for (const Tensor& g : grads)
    if (!g.device().is_cpu()) return true;
  return false;
}

double read_back(const Tensor& t) {
  return t.to(Device::cpu()).item<double>();
}

}  // namespace

double grad_norm(const std::vector<Tensor>& params) {
  if (const auto grads = defined_grads(params); on_gpu(grads))
    return std::sqrt(read_back(detail::device_sum_squares(grads)));
  double total = 0.0;
  for (const Tensor& p : params) {
    const Tensor g = p.grad();
    if (g.defined()) total += grad_sum_squares(g);
  }
  return std::sqrt(total);
}

double clip_grad_norm(const std::vector<Tensor>& params, double max_norm) {
  STRATA_CHECK(max_norm > 0, "clip_grad_norm: max_norm must be > 0, got ", max_norm);
  if (const auto grads = defined_grads(params); on_gpu(grads))
    return read_back(detail::device_clip(grads, max_norm).norm);
  const double norm = grad_norm(params);
  if (!std::isfinite(norm)) return norm;
  const double coef = max_norm / (norm + 1e-6);
  if (coef >= 1.0) return norm;
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    Tensor g = p.grad();
    if (!g.defined()) continue;
    if (!g.is_contiguous()) {
      g.mul_(coef);
      continue;
    }
    switch (g.dtype()) {
      case DType::f32:
        kernels::scale(g.data<float>(), g.numel(), float(coef));
        break;
      case DType::f64:
        kernels::scale(g.data<double>(), g.numel(), coef);
        break;
      case DType::bf16:
        kernels::scale(g.data<bf16>(), g.numel(), float(coef));
        break;
      default:
        break;
    }
    g.storage().bump_version();
  }
  return norm;
}

double clip_grad_norm(const Optimizer& opt, double max_norm) {
  return clip_grad_norm(opt.params(), max_norm);
}

Tensor clip_grad_norm_tensor(const std::vector<Tensor>& params, double max_norm) {
  if (const auto grads = defined_grads(params); on_gpu(grads))
    return detail::device_clip(grads, max_norm).norm;
  const double norm = max_norm > 0 ? clip_grad_norm(params, max_norm) : grad_norm(params);
  return from_vector<double>({norm}, {1});
}

}  // namespace strata::optim
