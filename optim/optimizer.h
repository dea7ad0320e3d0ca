#pragma once
// Optimizer: parameter groups, per-parameter named state tensors and a step counter. Subclasses
// supply the update of one parameter; the base class walks the groups under NoGradGuard.
//
// State is created eagerly (zeros, on the parameter's device) at construction, so state() is
// complete at any step and a checkpoint can store every tensor under
// `/optim/<param name>/<state name>` with the parameter's shape. Parameters whose gradient is
// undefined at step() are skipped (their state is unchanged), as in PyTorch.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

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

  // One update of every parameter that has a gradient; increments step_count() first, so the
  // update sees the 1-based step t of the bias corrections.
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
  int64_t step_count() const { return step_; }
  // Copies `state` into the live state tensors. Every key of state() must be present with the same
  // shape (dtype is converted); extra keys are an error naming them.
  void load_state(const std::map<std::string, Tensor>& state, int64_t step_count);

 protected:
  // Names of the state tensors per parameter ("exp_avg", "exp_avg_sq").
  virtual std::vector<std::string> state_names() const = 0;
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
  int64_t step_ = 0;
};

// f32 for f32/bf16 parameters, f64 for f64 parameters.
DType state_dtype(DType param_dtype);

}  // namespace strata::optim
