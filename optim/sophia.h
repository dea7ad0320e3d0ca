#pragma once
// Sophia-G (Liu et al. 2023) as the authors' SophiaG class (Liuhong99/Sophia sophia.py;
// ALGORITHMS.md 3.6). Per parameter, state "exp_avg" (m) and "hessian" (h):
//   step():            p = p * (1 - lr*wd)
//                      m = b1*m + (1-b1)*g
//                      p = p - lr * sign(m) * min(|m| / (rho*B*h + 1e-15), 1)
//   update_hessian():  h = b2*h + (1-b2) * g*g     with g the gradient of the sampled-label loss
//                                                  (the Gauss-Newton-Bartlett estimate, B folded
//                                                  into the denominator above)
// Hyper::beta1/beta2 are Sophia's betas (reference 0.965, 0.99); eps is unused (the 1e-15 is
// fixed, as in the authors' code). B is `batch_tokens`, the code's `bs` (default 5120).
//
// The win rate, the fraction of coordinates whose update is not clipped (|m| < rho*B*h, i.e.
// the ratio above is below 1), is counted over every updated coordinate of the last step(); the
// paper tunes rho to keep it within 0.1-0.5.
//
// rms_scale (No Train No Gain's T5 variant): lr is replaced by lr * max(1e-3, RMS(p)) in both
// lines that use it. On a GPU the same loops run as CUDA kernels (optim/kernels/cuda/
// sign_update.cu, same rounding; compiled, not yet run on a GPU).
#include "optim/optimizer.h"

namespace strata::optim {

struct SophiaOptions {
  double rho = 0.04;
  double batch_tokens = 5120;  // B
  bool rms_scale = false;
};

class Sophia : public Optimizer {
 public:
  Sophia(std::vector<ParamGroup> groups, const SophiaOptions& options);
  std::string name() const override { return "sophiag"; }
  const SophiaOptions& options() const { return o_; }

  // h = b2*h + (1-b2)*g⊙g from the gradients the parameters hold now (those without one are
  // skipped, as in the authors' code). The caller has run the sampled-label backward.
  void update_hessian();
  // Of the last step(): unclipped coordinates / updated coordinates (0 before any step), and
  // the two counts.
  double win_rate() const { return counted_ ? double(unclipped_count()) / double(counted_) : 0.0; }
  int64_t unclipped_count() const;
  int64_t counted_coordinates() const { return counted_; }

 protected:
  std::vector<std::string> state_names() const override { return {"exp_avg", "hessian"}; }
  bool updates_on_gpu() const override { return true; }
  void update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
              std::vector<Tensor>& state, int64_t step) override;

 private:
  void update_on_gpu(const Hyper& h, double lr, const std::string& name, Tensor& param,
                     const Tensor& grad, std::vector<Tensor>& state);
  SophiaOptions o_;
  mutable int64_t unclipped_ = 0;
  int64_t counted_ = 0;
  mutable Tensor device_unclipped_;  // GPU: the step's count so far, on the device
  int64_t counted_at_step_ = -1;     // step_count() the counts belong to
};

}  // namespace strata::optim
