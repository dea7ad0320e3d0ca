#pragma once
// Optimizer: parameter groups, per-parameter named state tensors and step counts. Subclasses
// supply the update of one parameter; the base class walks the groups under NoGradGuard.
//
// State is created eagerly (zeros, on the parameter's device) at construction, so state() is
// complete at any step and a checkpoint can store every tensor under
// `/optim/<param name>/<state name>` (the parameter's shape unless the optimizer says otherwise:
// Adafactor's factored moments). Parameters whose gradient is undefined at step() are skipped
// (their state and their step count are unchanged), as in PyTorch: each parameter counts its own
// steps, so a parameter that first gets a gradient at step 5 starts its bias correction at t = 1.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/autograd/grad_mode.h"
#include "core/tensor.h"
#include "optim/param_group.h"

namespace strata::optim {

class Optimizer {
 public:
  explicit Optimizer(std::vector<ParamGroup> groups);
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  virtual std::string name() const = 0;

  // One update of every parameter that has a gradient; increments step_count() and the step
  // count of each updated parameter first, so the update sees that parameter's 1-based step t.
  void step();
  // set_to_none releases the gradients (the default, as PyTorch); otherwise they are zero-filled.
  void zero_grad(bool set_to_none = true);

  // Sets the lr of every group (schedules call this once per step).
  void set_lr(double lr);
  void set_lr(size_t group, double lr);
  double lr(size_t group = 0) const;

  const std::vector<ParamGroup>& groups() const { return groups_; }
  std::vector<Tensor> params() const;

  // Keys "<param name>/<state name>", e.g. "decoder.wq.weight/exp_avg"; values are the live
  // state tensors (not copies).
  std::map<std::string, Tensor> state() const;
  // step() calls so far (the trainer's optimizer step).
  int64_t step_count() const { return step_; }
  // Updates each parameter has had (its t), by parameter name.
  std::map<std::string, int64_t> param_steps() const;
  // Copies `state` into the live state tensors. Every key of state() must be present with the same
  // shape (dtype is converted); extra keys are an error naming them. A parameter missing from
  // `param_steps` takes `step_count` (checkpoints written before per-parameter counts, when every
  // parameter was updated at every step); names it does not hold are skipped (a pipeline stage
  // loads the whole model's counts).
  void load_state(const std::map<std::string, Tensor>& state, int64_t step_count,
                  const std::map<std::string, int64_t>& param_steps = {});

  // RMS of a tensor, ||x||_2 / sqrt(numel), accumulated in f64 in a fixed order (on a GPU: one
  // read-back). 0 for an empty tensor.
  static double rms(const Tensor& x);

 protected:
  // Names of the state tensors per parameter ("exp_avg", "exp_avg_sq"), each of the parameter's
  // shape. An optimizer whose state differs per parameter overrides state_specs instead.
  virtual std::vector<std::string> state_names() const { return {}; }
  struct StateSpec {
    std::string name;
    Shape shape;
  };
  virtual std::vector<StateSpec> state_specs(const Tensor& param) const;
  // The RMS an update of parameter `name` scales by (AdamWScale, the RMS-scaled Lion and Sophia):
  // rms(param). A tensor-parallel trainer overrides it to take the whole tensor's RMS over its
  // shards (train/parallel_step.h).
  virtual double param_rms(const std::string& name, const Tensor& param) {
    (void)name;
    return rms(param);
  }
  // Calls fn(hyper, param, grad, state) for every parameter with a gradient, in group order, the
  // gradient prepared as update() gets it. For passes besides the step (Sophia's Hessian EMA).
  template <class Fn>
  void for_each_with_grad(Fn&& fn);
  // Updates one parameter in place. `state` holds the tensors named by state_names(), in order.
  // `grad` is contiguous and has the parameter's dtype or the state dtype.
  virtual void update(const Hyper& h, const std::string& name, Tensor& param, const Tensor& grad,
                      std::vector<Tensor>& state, int64_t step) = 0;
  // Whether update() handles parameters on a GPU (optim/kernels/cuda/); a subclass without a
  // GPU update is refused at init_state for a model on a GPU, with an error naming the fix.
  virtual bool updates_on_gpu() const { return false; }
  // Creates the state, on each parameter's device, once the subclass is constructed (virtual
  // calls are not possible earlier).
  void init_state();

 private:
  std::vector<ParamGroup> groups_;
  // state_[g][i][k]: group g, parameter i, state tensor k.
  std::vector<std::vector<std::vector<Tensor>>> state_;
  std::vector<std::vector<std::vector<std::string>>> state_names_;  // same indices as state_
  std::vector<std::vector<int64_t>> param_steps_;                   // [g][i]
  int64_t step_ = 0;
  // The gradient of `np` as update() takes it (contiguous; its dtype or the state dtype), or an
  // undefined tensor when it has none.
  static Tensor prepared_grad(const NamedParam& np);
};

template <class Fn>
void Optimizer::for_each_with_grad(Fn&& fn) {
  NoGradGuard no_grad;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      NamedParam& np = groups_[g].params[i];
      const Tensor grad = prepared_grad(np);
      if (grad.defined()) fn(groups_[g].hyper, np, grad, state_[g][i]);
    }
}

// f32 for f32/bf16 parameters, f64 for f64 parameters.
DType state_dtype(DType param_dtype);

}  // namespace strata::optim
