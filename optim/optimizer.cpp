#include "optim/optimizer.h"

#include <set>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"

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

void Optimizer::init_state() {
  const std::vector<std::string> names = state_names();
  state_.assign(groups_.size(), {});
  for (size_t g = 0; g < groups_.size(); ++g)
    for (const NamedParam& np : groups_[g].params) {
      const Device d = np.param.device();
      STRATA_CHECK(d.is_cpu() || updates_on_gpu(), "optimizer ", name(), ": parameter '", np.name,
                   "' is on ", d.str(), " but ", name(),
                   " has no GPU update; use optim.name = adamw (or adamwscale), or train on "
                   "the CPU");
      std::vector<Tensor> st;
      for (size_t k = 0; k < names.size(); ++k)
        st.push_back(zeros(np.param.shape(), state_dtype(np.param.dtype()), d));
      state_[g].push_back(std::move(st));
    }
}

void Optimizer::step() {
  STRATA_CHECK(state_.size() == groups_.size(), "optimizer: state not initialised");
  NoGradGuard no_grad;
  ++step_;
  for (size_t g = 0; g < groups_.size(); ++g) {
    ParamGroup& group = groups_[g];
    for (size_t i = 0; i < group.params.size(); ++i) {
      NamedParam& np = group.params[i];
      Tensor grad = np.param.grad();
      if (!grad.defined()) continue;
      STRATA_CHECK(grad.shape() == np.param.shape(), "optimizer: gradient of '", np.name,
                   "' has shape ", shape_str(grad.shape()), ", expected ",
                   shape_str(np.param.shape()));
      const DType sd = state_dtype(np.param.dtype());
      if (grad.dtype() != np.param.dtype() && grad.dtype() != sd) grad = grad.to(sd);
      grad = grad.contiguous();
      update(group.hyper, np.name, np.param, grad, state_[g][i], step_);
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
  const std::vector<std::string> names = state_names();
  std::map<std::string, Tensor> out;
  for (size_t g = 0; g < groups_.size(); ++g)
    for (size_t i = 0; i < groups_[g].params.size(); ++i)
      for (size_t k = 0; k < names.size(); ++k)
        out.emplace(groups_[g].params[i].name + "/" + names[k], state_[g][i][k]);
  return out;
}

void Optimizer::load_state(const std::map<std::string, Tensor>& state, int64_t step_count) {
  STRATA_CHECK(step_count >= 0, "optimizer: step count must be >= 0, got ", step_count);
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
}

}  // namespace strata::optim
