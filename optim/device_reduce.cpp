#include "optim/device_reduce.h"

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"

#ifdef STRATA_HAS_CUDA
#include "optim/kernels/cuda/optim_cuda.h"
#endif

namespace strata::optim::detail {

#ifdef STRATA_HAS_CUDA
namespace {

namespace kc = kernels::cuda;

Device common_device(const std::vector<Tensor>& xs, const char* who) {
  STRATA_CHECK(!xs.empty(), who, ": no tensors");
  const Device d = xs.front().device();
  for (const Tensor& x : xs)
    STRATA_CHECK(x.device() == d, who, ": tensors on ", d.str(), " and ", x.device().str(),
                 "; move the whole model to one device (Module::to)");
  STRATA_CHECK(!d.is_cpu(), who, ": expected tensors on a GPU");
  return d;
}

void sum_squares_into(const Tensor& x, double* parts) {
  const int dev = x.device().index;
  switch (x.dtype()) {
    case DType::f32:
      kc::sum_squares_parts(dev, static_cast<const float*>(x.raw_data()), x.numel(), parts);
      return;
    case DType::f64:
      kc::sum_squares_parts(dev, static_cast<const double*>(x.raw_data()), x.numel(), parts);
      return;
    case DType::bf16:
      kc::sum_squares_parts(dev, static_cast<const bf16*>(x.raw_data()), x.numel(), parts);
      return;
    default:
      STRATA_FAIL("sum of squares: expected a floating tensor, got ", dtype_name(x.dtype()));
  }
}

}  // namespace

Tensor device_sum_squares(const std::vector<Tensor>& xs) {
  const Device d = common_device(xs, "sum of squares");
  NoGradGuard no_grad;
  const auto count = int64_t(xs.size());
  Tensor parts = empty({count * kc::kSumParts}, DType::f64, d);
  std::vector<Tensor> keep;  // contiguous copies stay alive until their kernels are queued
  for (int64_t i = 0; i < count; ++i) {
    const Tensor c = xs[size_t(i)].contiguous();
    keep.push_back(c);
    sum_squares_into(c, static_cast<double*>(parts.raw_data()) + i * kc::kSumParts);
  }
  Tensor out = empty({1}, DType::f64, d);
  kc::sum_parts(d.index, static_cast<const double*>(parts.raw_data()), count * kc::kSumParts,
                static_cast<double*>(out.raw_data()));
  return out;
}

DeviceClip device_clip(const std::vector<Tensor>& grads, double max_norm) {
  const Device d = common_device(grads, "clip_grad_norm");
  const Tensor ss = device_sum_squares(grads);
  DeviceClip r{empty({1}, DType::f64, d), empty({1}, DType::f64, d)};
  kc::clip_coefficient(d.index, static_cast<const double*>(ss.raw_data()), max_norm,
                       static_cast<double*>(r.norm.raw_data()),
                       static_cast<double*>(r.coef.raw_data()));
  if (max_norm <= 0) return r;
  NoGradGuard no_grad;
  const auto* coef = static_cast<const double*>(r.coef.raw_data());
  for (const Tensor& grad : grads) {
    Tensor g = grad;
    Tensor c = g.is_contiguous() ? g : g.contiguous();
    switch (c.dtype()) {
      case DType::f32:
        kc::scale_by(d.index, static_cast<float*>(c.raw_data()), c.numel(), coef);
        break;
      case DType::f64:
        kc::scale_by(d.index, static_cast<double*>(c.raw_data()), c.numel(), coef);
        break;
      case DType::bf16:
        kc::scale_by(d.index, static_cast<bf16*>(c.raw_data()), c.numel(), coef);
        break;
      default:
        STRATA_FAIL("clip_grad_norm: gradients must be floating, got ", dtype_name(c.dtype()));
    }
    if (!c.is_same(g)) g.copy_(c);
    g.storage().bump_version();
  }
  return r;
}

#else

Tensor device_sum_squares(const std::vector<Tensor>&) {
  STRATA_FAIL("sum of squares: tensors on a GPU need a build with -DSTRATA_CUDA=ON");
}

DeviceClip device_clip(const std::vector<Tensor>&, double) {
  STRATA_FAIL("clip_grad_norm: gradients on a GPU need a build with -DSTRATA_CUDA=ON");
}

#endif

}  // namespace strata::optim::detail
