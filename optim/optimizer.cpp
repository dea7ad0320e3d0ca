#include "optim/optimizer.h"

#include <cmath>
#include <set>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "optim/device_reduce.h"
#include "optim/kernels/adam_kernel.h"

namespace strata::optim {

DType state_dtype(DType param_dtype) {
  STRATA_CHECK(is_floating(param_dtype), "optimizer: parameters must be floating, got ",
               dtype_name(param_dtype));
  return param_dtype == DType::f64 ? DType::f64 : DType::f32;
}

Optimizer::Optimizer(std::vector<ParamGroup> groups) : groups_(std::move(groups)) {
  std::set<std::string> names;
  for (const ParamGroup& g : groups_) {
    STRATA_CHECK(g.hyper.lr >= 0, "optimizer: lr must be >= 0, got ", g.hyper.lr);
    STRATA_CHECK(g.hyper.weight_decay >= 0, "optimizer: weight_decay must be >= 0, got ",
                 g.hyper.weight_decay);
    STRATA_CHECK(g.hyper.beta1 >= 0 && g.hyper.beta1 < 1,
                 "optimizer: beta1 must be in [0, 1), got ", g.hyper.beta1);
    STRATA_CHECK(g.hyper.beta2 >= 0 && g.hyper.beta2 < 1,
                 "optimizer: beta2 must be in [0, 1), got ", g.hyper.beta2);
    STRATA_CHECK(g.hyper.eps >= 0, "optimizer: eps must be >= 0, got ", g.hyper.eps);
    for (const NamedParam& np : g.params) {
      STRATA_CHECK(np.param.defined(), "optimizer: parameter '", np.name, "' is undefined");
      STRATA_CHECK(np.param.is_contiguous(), "optimizer: parameter '", np.name,
                   "' must be contiguous");
      state_dtype(np.param.dtype());
      STRATA_CHECK(names.insert(np.name).second, "optimizer: parameter name '", np.name,
                   "' appears twice");
    }
  }
}

std::vector<Optimizer::StateSpec> Optimizer::state_specs(const Tensor& param) const {
  std::vector<StateSpec> specs;
  for (const std::string& n : state_names()) specs.push_back({n, param.shape()});
  return specs;
}

void Optimizer::init_state() {
  state_.assign(groups_.size(), {});
  state_names_.assign(groups_.size(), {});
  param_steps_.assign(groups_.size(), {});
  for (size_t g = 0; g < groups_.size(); ++g)
    for (const NamedParam& np : groups_[g].params) {
      const Device d = np.param.device();
      STRATA_CHECK(d.is_cpu() || updates_on_gpu(), "optimizer ", name(), ": parameter '", np.name,
                   "' is on ", d.str(), " but ", name(),
                   " has no GPU update; use optim.name = adamw (or adamwscale), or train on "
                   "the CPU");
      std::vector<Tensor> st;
      std::vector<std::string> names;
      for (const StateSpec& spec : state_specs(np.param)) {
        st.push_back(zeros(spec.shape, state_dtype(np.param.dtype()), d));
        names.push_back(spec.name);
      }
      state_[g].push_back(std::move(st));
      state_names_[g].push_back(std::move(names));
      param_steps_[g].push_back(0);
    }
}

Tensor Optimizer::prepared_grad(const NamedParam& np) {
  Tensor grad = np.param.grad();
  if (!grad.defined()) return grad;
  STRATA_CHECK(grad.shape() == np.param.shape(), "optimizer: gradient of '", np.name,
               "' has shape ", shape_str(grad.shape()), ", expected ", shape_str(np.param.shape()));
  const DType sd = state_dtype(np.param.dtype());
  if (grad.dtype() != np.param.dtype() && grad.dtype() != sd) grad = grad.to(sd);
  return grad.contiguous();
}

void Optimizer::step() {
  STRATA_CHECK(state_.size() == groups_.size(), "optimizer: state not initialised");
  NoGradGuard no_grad;
  ++step_;
  for (size_t g = 0; g < groups_.size(); ++g) {
    ParamGroup& group = groups_[g];
    for (size_t i = 0; i < group.params.size(); ++i) {
      NamedParam& np = group.params[i];
      const Tensor grad = prepared_grad(np);
      if (!grad.defined()) continue;
      // PyTorch's per-parameter state["step"]: only the steps this parameter took part in.
      const int64_t t = ++param_steps_[g][i];
      update(group.hyper, np.name, np.param, grad, state_[g][i], t);
      np.param.storage().bump_version();
    }
  }
}

void Optimizer::zero_grad(bool set_to_none) {
  NoGradGuard no_grad;
  for (ParamGroup& g : groups_)
    for (NamedParam& np : g.params) {
      if (set_to_none) {
        np.param.set_grad(Tensor());
      } else if (Tensor gr = np.param.grad(); gr.defined()) {
        gr.zero_();
      }
    }
}

void Optimizer::set_lr(double lr) {
  STRATA_CHECK(lr >= 0, "optimizer: lr must be >= 0, got ", lr);
  for (ParamGroup& g : groups_) g.hyper.lr = lr;
}

void Optimizer::set_lr(size_t group, double lr) {
  STRATA_CHECK(group < groups_.size(), "optimizer: group ", group, " out of range (",
               groups_.size(), " groups)");
  STRATA_CHECK(lr >= 0, "optimizer: lr must be >= 0, got ", lr);
  groups_[group].hyper.lr = lr;
}

double Optimizer::lr(size_t group) const {
  STRATA_CHECK(group < groups_.size(), "optimizer: group ", group, " out of range (",
               groups_.size(), " groups)");
  return groups_[group].hyper.lr;
}

std::vector<Tensor> Optimizer::params() const {
  std::vector<Tensor> out;
  for (const ParamGroup& g : groups_)
    for (const NamedParam& np : g.params) out.push_back(np.param);
  return out;
}

std::map<std::string, Tensor> Optimizer::state() const {
  std::map<std::string, Tensor> out;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i)
      for (size_t k = 0; k < state_names_[g][i].size(); ++k)
        out.emplace(groups_[g].params[i].name + "/" + state_names_[g][i][k], state_[g][i][k]);
  return out;
}

std::map<std::string, int64_t> Optimizer::param_steps() const {
  std::map<std::string, int64_t> out;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i)
      out.emplace(groups_[g].params[i].name, param_steps_[g][i]);
  return out;
}

double Optimizer::rms(const Tensor& x) {
  const int64_t n = x.numel();
  if (n == 0) return 0.0;
  const Tensor p = x.contiguous();
  double ss = 0.0;
  if (!p.device().is_cpu()) {
    // The step size needs the value on the host: one read-back per parameter and step.
    ss = detail::device_sum_squares({p}).to(Device::cpu()).item<double>();
    return std::sqrt(ss) / std::sqrt(double(n));
  }
  switch (p.dtype()) {
    case DType::f32:
      ss = kernels::sum_squares(p.data<float>(), n);
      break;
    case DType::f64:
      ss = kernels::sum_squares(p.data<double>(), n);
      break;
    case DType::bf16:
      ss = kernels::sum_squares(p.data<bf16>(), n);
      break;
    default:
      STRATA_FAIL("optimizer: rms of a ", dtype_name(p.dtype()),
                  " tensor; expected a floating one");
  }
  return std::sqrt(ss) / std::sqrt(double(n));
}

void Optimizer::load_state(const std::map<std::string, Tensor>& state, int64_t step_count,
                           const std::map<std::string, int64_t>& param_steps) {
  STRATA_CHECK(step_count >= 0, "optimizer: step count must be >= 0, got ", step_count);
  // Counts of parameters this optimizer does not hold are skipped: a pipeline stage's optimizer
  // holds its stage's parameters, a checkpoint has the whole model's.
  for (const auto& [pname, t] : param_steps)
    STRATA_CHECK(t >= 0 && t <= step_count, "optimizer: parameter '", pname, "' has step count ", t,
                 ", outside [0, ", step_count, "]");
  const std::map<std::string, Tensor> live = this->state();
  for (const auto& [key, src] : state)
    STRATA_CHECK(live.count(key), "optimizer: load_state got unknown state '", key, "' for ",
                 name());
  NoGradGuard no_grad;
  for (const auto& [key, dst] : live) {
    auto it = state.find(key);
    STRATA_CHECK(it != state.end(), "optimizer: load_state is missing state '", key, "'");
    STRATA_CHECK(it->second.shape() == dst.shape(), "optimizer: state '", key, "' has shape ",
                 shape_str(it->second.shape()), ", expected ", shape_str(dst.shape()));
    Tensor src = it->second.dtype() == dst.dtype() ? it->second : it->second.to(dst.dtype());
    // A checkpoint's host tensors into state on a GPU.
    if (src.device() != dst.device()) src = src.contiguous().to(dst.device());
    Tensor d = dst;
    d.copy_(src);
  }
  step_ = step_count;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i) {
      auto it = param_steps.find(groups_[g].params[i].name);
      param_steps_[g][i] = it == param_steps.end() ? step_count : it->second;
    }
}

}  // namespace strata::optim
