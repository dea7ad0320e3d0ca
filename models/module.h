#pragma once
// Module: a tree of named parameters and submodules. The full dotted name of a parameter
// ("layers.3.attn.q_proj.weight") is its identity: checkpoint key, initialisation key and the
// name optimizers use for their rules (no weight decay on norms, ...).
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "models/precision.h"

namespace strata::models {

// How a parameter is filled by Module::init_parameters.
struct Init {
  enum class Kind { Normal, Uniform, Constant };
  Kind kind = Kind::Normal;
  double a = 0.0;  // Normal: mean; Uniform: low; Constant: the value
  double b = 1.0;  // Normal: std;  Uniform: high

  static Init normal(double std, double mean = 0.0) { return {Kind::Normal, mean, std}; }
  static Init uniform(double lo, double hi) { return {Kind::Uniform, lo, hi}; }
  static Init constant(double v) { return {Kind::Constant, v, 0.0}; }
  static Init zeros() { return constant(0.0); }
  static Init ones() { return constant(1.0); }
};

// How a parameter is laid out over the tensor-parallel group, so checkpoints can store and reload
// the global tensor under any layout: this process holds slice `part` of `parts` equal slices of
// `global_shape` along `dim`. An unsharded parameter is replicated: parts 1, dim -1, and
// global_shape is its own shape.
struct Sharding {
  Shape global_shape;
  int64_t dim = -1;
  int64_t part = 0;
  int64_t parts = 1;

  static Sharding replicated(const Shape& shape) { return {shape, -1, 0, 1}; }
  // Throws unless `parts` divides global_shape[dim] (the message names `what`).
  static Sharding split(const Shape& global_shape, int64_t dim, int64_t part, int64_t parts,
                        const std::string& what);
  bool is_replicated() const { return parts == 1; }
  Shape local_shape() const;
  int64_t offset() const;  // first global index along `dim` held here (0 when replicated)
  // This process's slice of a global-shaped tensor (a view).
  Tensor local_slice(const Tensor& global) const;
};

// 64-bit FNV-1a: stable across platforms, compilers and runs (std::hash is none of these).
uint64_t stable_name_hash(std::string_view name);

class Module {
 public:
  explicit Module(std::string type_name) : type_name_(std::move(type_name)) {}
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& type_name() const { return type_name_; }

  // Parameters and submodules in registration order; names are full dotted paths from this module.
  // A tensor reachable under two names (a tied weight) is listed once, under its first name.
  std::vector<std::pair<std::string, Tensor>> named_parameters() const;
  std::vector<Tensor> parameters() const;
  std::vector<std::pair<std::string, Module*>> named_modules();  // "" is this module
  // The parameter with this full dotted name, or throws naming the nearest valid names.
  Tensor parameter(const std::string& full_name) const;
  bool has_parameter(const std::string& full_name) const;
  // Copies `value` (converted to the parameter's dtype) into the named parameter. Its shape is
  // the parameter's own or, for a tensor-parallel shard, the global one (then this process's
  // slice is copied).
  void load_parameter(const std::string& full_name, const Tensor& value);
  // How the named parameter is split over the tensor-parallel group (replicated when it is not).
  const Sharding& sharding(const std::string& full_name) const;

  int64_t num_parameters() const;

  // Train/eval mode, propagated to every submodule.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // ---- Mixed precision (models/precision.h) -------------------------------------------------
  // How forward passes compute (f32, or bf16 with f32 master weights); the parameters keep their
  // dtype either way. Set on the root once the tree is built (the models' constructors do it
  // from their config); it propagates to every submodule, as train() does.
  void set_precision(const Precision& p) {
    precision_ = p;
    for (auto& [n, c] : children_) c->set_precision(p);
  }
  const Precision& precision() const { return precision_; }
  // ---- end mixed precision -----------------------------------------------------------------

  // Converts every parameter (keeping requires_grad) and drops gradients.
  void to(DType dtype);
  DType dtype() const;  // of the first parameter (f32 for a module without any)
  // Moves every parameter and its gradient to `device` in place: each parameter's TensorImpl
  // keeps its identity and gets the copy's storage, so every holder of the tensor (optimizers,
  // gradient reducers, tied slots, autograd's AccumulateGrad) sees the move. requires_grad,
  // dtype, names and sharding are unchanged. Views of a parameter taken before the move keep
  // the old storage. A parameter already on `device` is left as it is (to(cpu) on a CPU model
  // copies nothing).
  void to(Device device);
  Device device() const;  // of the first parameter (cpu for a module without any)
  // Clears every parameter's gradient.
  void zero_grad();

  // Fills every parameter from Philox keyed by (seed, RngStream::Init, stable_name_hash(full
  // name)) with the element index as the counter, so the weights depend on the seed and the
  // names only: not on construction order, thread count or sharding (a shard receives exactly
  // its slice of the global tensor's numbers).
  void init_parameters(uint64_t seed);

 protected:
  // Registers a new parameter of `shape` and returns a stable reference to its slot: the slot
  // keeps its address when to() replaces the tensor. Constant inits are applied at once; random
  // ones leave zeros until init_parameters (called on the root, since the full names are known
  // only there).
  Tensor& register_parameter(const std::string& name, const Shape& shape, Init init,
                             DType dtype = DType::f32);
  // A tensor-parallel shard: the slot holds sharding.local_shape().
  Tensor& register_sharded_parameter(const std::string& name, const Sharding& sharding, Init init,
                                     DType dtype = DType::f32);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> m) {
    add_child(name, m);
    return m;
  }

 private:
  struct Param {
    std::string name;
    Tensor tensor;
    Init init;
    Sharding sharding;
  };
  struct NamedParam {
    std::string name;
    const Param* param;
  };
  void add_child(const std::string& name, std::shared_ptr<Module> m);
  void collect(const std::string& prefix, std::vector<NamedParam>& out) const;
  Param* find(const std::string& full_name);
  const Param* find(const std::string& full_name) const;

  std::string type_name_;
  bool training_ = true;
  Precision precision_;       // mixed precision (set_precision)
  std::deque<Param> params_;  // deque: references to slots stay valid as more are registered
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// An ordered list of submodules named "0", "1", ...
template <class M>
class ModuleList : public Module {
 public:
  // `first`: the index the first item is named by, for a list that holds items [first, ...) of a
  // longer one (a pipeline stage's blocks keep the whole model's names).
  explicit ModuleList(int64_t first = 0) : Module("ModuleList"), first_(first) {}
  void push_back(std::shared_ptr<M> m) {
    items_.push_back(
        register_module(std::to_string(first_ + int64_t(items_.size())), std::move(m)));
  }
  size_t size() const { return items_.size(); }
  M& operator[](size_t i) const { return *items_.at(i); }
  const std::vector<std::shared_ptr<M>>& items() const { return items_; }

 private:
  int64_t first_;
  std::vector<std::shared_ptr<M>> items_;
};

// Puts a module in eval mode for a scope (generation, evaluation) and restores its previous
// train/eval mode on exit.
class EvalModeGuard {
 public:
  explicit EvalModeGuard(Module& m) : m_(m), was_training_(m.is_training()) { m_.eval(); }
  ~EvalModeGuard() { m_.train(was_training_); }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  Module& m_;
  bool was_training_;
};

}  // namespace strata::models
