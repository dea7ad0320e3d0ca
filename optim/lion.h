#pragma once
// Lion (Chen et al. 2023) as lion-pytorch's update_fn (ALGORITHMS.md 3.5), per parameter with
// gradient g and momentum m (state "exp_avg"):
//   p = p * (1 - lr*wd)                       decoupled weight decay first
//   p = p - lr * sign(b1*m + (1-b1)*g)        sign(0) = 0, as torch.sgn
//   m = b2*m + (1-b2)*g                       momentum updated after, with beta2
// Hyper::beta1/beta2 are Lion's two betas (defaults 0.9, 0.99); eps is unused.
//
// rms_scale (No Train No Gain's T5 variant): lr is replaced by lr_eff = lr * max(1e-3, RMS(p)),
// RMS of the parameter before the update (Optimizer::param_rms), in both lines that use it, as
// passing the scaled lr to update_fn does. On a GPU the same loop runs as a CUDA kernel
// (optim/kernels/cuda/sign_update.cu, same rounding; compiled, not yet run on a GPU).
#include "optim/optimizer.h"

namespace strata::optim {

class Lion : public Optimizer {
 public:
  explicit Lion(std::vector<ParamGroup> groups, bool rms_scale = false);
  std::string name() const override { return rms_scale_ ? "lion (rms-scaled)" : "lion"; }
  bool rms_scale() const { return rms_scale_; }

 protected:
  std::vector<std::string> state_names() const override { return {"exp_avg"}; }
  bool updates_on_gpu() const override { return true; }
  void update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
              std::vector<Tensor>& state, int64_t step) override;

 private:
  void update_on_gpu(const Hyper& h, double lr, const std::string& name, Tensor& param,
                     const Tensor& grad, std::vector<Tensor>& state);
  bool rms_scale_;
};

}  // namespace strata::optim
