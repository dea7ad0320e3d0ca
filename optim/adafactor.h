#pragma once
// Adafactor (Shazeer & Stern 2018) exactly as Hugging Face transformers' `Adafactor` (the
// implementation nanoT5 compares against). Per parameter with gradient g and its own step t:
//   rel  = relative_step ? min(warmup_init ? 1e-6*t : 1e-2, 1/sqrt(t)) : lr
//   a    = (scale_parameter ? max(eps2, RMS(p)) : 1) * rel         RMS of p before the update
//   b2t  = 1 - t^decay_rate                                         (decay_rate -0.8)
//   u    = g^2 + eps1
//   >= 2-D (factored over the last two dims, leading dims batched; state "exp_avg_sq_row" of
//   shape[:-1], "exp_avg_sq_col" of shape[:-2] + shape[-1:]):
//          R = b2t*R + (1-b2t)*mean_last(u);   C = b2t*C + (1-b2t)*mean_second_last(u)
//          u = rsqrt(R / mean(R))[..., :, None] * rsqrt(C)[..., None, :] * g
//   1-D:   V = b2t*V + (1-b2t)*u;   u = rsqrt(V) * g                  (state "exp_avg_sq")
//   u    = u / max(RMS(u) / clip_threshold, 1) * a
//   with momentum (beta1 set): m = b1*m + (1-b1)*u;  u = m           (state "exp_avg")
//   p    = p - wd*a*p   (when wd != 0, before the step, on p)
//   p    = p - u
// Defaults as HF: eps (1e-30, 1e-3), clip_threshold 1.0, decay_rate -0.8, no momentum,
// relative_step, scale_parameter, no warmup_init. With relative_step the group's lr (and so the
// trainer's schedule) is not used: HF refuses a manual lr there, the trainer says so in its log.
// Hyper::beta1 is the momentum when `momentum` is set; Hyper::beta2 and eps are unused.
// CPU only (updates_on_gpu() is false).
#include "optim/optimizer.h"

namespace strata::optim {

struct AdafactorOptions {
  bool relative_step = true;
  bool scale_parameter = true;
  bool warmup_init = false;
  bool momentum = false;  // HF beta1 = None unless set; then beta1 = Hyper::beta1
  double clip_threshold = 1.0;
  double decay_rate = -0.8;
  double eps1 = 1e-30, eps2 = 1e-3;
};

class Adafactor : public Optimizer {
 public:
  Adafactor(std::vector<ParamGroup> groups, const AdafactorOptions& options);
  std::string name() const override { return "adafactor"; }
  const AdafactorOptions& options() const { return o_; }

  // The step size a of a parameter at step t (1-based) with RMS `rms`, as HF's _get_lr.
  double step_size(const Hyper& h, int64_t t, double rms) const;

 protected:
  std::vector<StateSpec> state_specs(const Tensor& param) const override;
  void update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
              std::vector<Tensor>& state, int64_t step) override;

 private:
  AdafactorOptions o_;
};

}  // namespace strata::optim
