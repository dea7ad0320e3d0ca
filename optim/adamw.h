#pragma once
// AdamW (PyTorch's torch.optim.AdamW) and AdamWScale (nanoT5's AdamW with the step scaled by the
// parameter's RMS). Both keep "exp_avg" and "exp_avg_sq" per parameter, in f32 for f32/bf16
// parameters and f64 for f64 ones, on the parameter's device; the update is one fused pass
// (optim/kernels/adam_kernel.h on the CPU, optim/kernels/cuda/adam_update.cu on a GPU, same bits).
#include "optim/optimizer.h"

namespace strata::optim {

// Per parameter, t = step (1-based), as torch.optim.AdamW:
//   p = p * (1 - lr*wd)
//   m = lerp(m, g, 1-b1);  v = b2*v + (1-b2)*g^2
//   p = p - lr/(1-b1^t) * m / (sqrt(v)/sqrt(1-b2^t) + eps)
class AdamW : public Optimizer {
 public:
  explicit AdamW(std::vector<ParamGroup> groups);
  std::string name() const override { return "adamw"; }

 protected:
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  bool updates_on_gpu() const override { return true; }
  void update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
              std::vector<Tensor>& state, int64_t step) override;
};

// nanoT5's AdamWScale (ALGORITHMS.md 1.3), per parameter:
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g^2
//   a = lr * sqrt(1-b2^t)/(1-b1^t) * max(1e-3, param_rms(p)),  RMS(p) = ||p||_2 / sqrt(numel), p
//   before p = p - a * m / (sqrt(v) + eps)          (eps outside the bias correction, unlike AdamW)
//   p = p - lr*wd*p                          (decay after the step, on the updated p)
// nanoT5 uses eps = 1e-6 and wd = 0.
class AdamWScale : public Optimizer {
 public:
  explicit AdamWScale(std::vector<ParamGroup> groups);
  std::string name() const override { return "adamwscale"; }

 protected:
  std::vector<std::string> state_names() const override { return {"exp_avg", "exp_avg_sq"}; }
  bool updates_on_gpu() const override { return true; }
  void update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
              std::vector<Tensor>& state, int64_t step) override;
};

}  // namespace strata::optim
