// Module: parameter registry, name resolution, deterministic initialisation.
#include "models/module.h"

#include "core/text.h"

#include <algorithm>
#include <set>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "core/random/philox.h"

namespace strata::models {

uint64_t stable_name_hash(std::string_view name) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : name) {
    h ^= c;
    h *= 0x100000001b3ull;
  }
  return h;
}

Sharding Sharding::split(const Shape& global_shape, int64_t dim, int64_t part, int64_t parts,
                         const std::string& what) {
  STRATA_CHECK(dim >= 0 && dim < int64_t(global_shape.size()), what, ": split dim ", dim,
               " is outside the shape ", shape_str(global_shape));
  STRATA_CHECK(parts >= 1 && part >= 0 && part < parts, what, ": bad part ", part, " of ", parts);
  STRATA_CHECK(global_shape[size_t(dim)] % parts == 0, what, ": size ", global_shape[size_t(dim)],
               " of dim ", dim, " is not divisible by the tensor-parallel size ", parts);
  return parts == 1 ? replicated(global_shape) : Sharding{global_shape, dim, part, parts};
}

Shape Sharding::local_shape() const {
  Shape s = global_shape;
  if (!is_replicated()) s[size_t(dim)] /= parts;
  return s;
}

int64_t Sharding::offset() const {
  return is_replicated() ? 0 : part * (global_shape[size_t(dim)] / parts);
}

Tensor Sharding::local_slice(const Tensor& global) const {
  STRATA_CHECK(global.shape() == global_shape, "Sharding::local_slice: expected the global shape ",
               shape_str(global_shape), ", got ", shape_str(global.shape()));
  if (is_replicated()) return global;
  return global.narrow(dim, offset(), global_shape[size_t(dim)] / parts);
}

Tensor& Module::register_parameter(const std::string& name, const Shape& shape, Init init,
                                   DType dtype) {
  return register_sharded_parameter(name, Sharding::replicated(shape), init, dtype);
}

Tensor& Module::register_sharded_parameter(const std::string& name, const Sharding& sharding,
                                           Init init, DType dtype) {
  STRATA_CHECK(!name.empty() && name.find('.') == std::string::npos,
               "Module::register_parameter: bad name '", name, "' in ", type_name_);
  for (const auto& p : params_)
    STRATA_CHECK(p.name != name, "Module::register_parameter: '", name, "' registered twice in ",
                 type_name_);
  for (const auto& [n, m] : children_)
    STRATA_CHECK(n != name, "Module::register_parameter: '", name, "' is already a submodule of ",
                 type_name_);
  // Constant inits need no name, so they apply at once; random ones wait for init_parameters.
  Tensor t = full(sharding.local_shape(), init.kind == Init::Kind::Constant ? init.a : 0.0, dtype);
  t.set_requires_grad(true);
  params_.push_back(Param{name, t, init, sharding});
  return params_.back().tensor;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> m) {
  STRATA_CHECK(m != nullptr, "Module::register_module: null module '", name, "' in ", type_name_);
  STRATA_CHECK(!name.empty() && name.find('.') == std::string::npos,
               "Module::register_module: bad name '", name, "' in ", type_name_);
  for (const auto& [n, c] : children_)
    STRATA_CHECK(n != name, "Module::register_module: '", name, "' registered twice in ",
                 type_name_);
  for (const auto& p : params_)
    STRATA_CHECK(p.name != name, "Module::register_module: '", name, "' is already a parameter of ",
                 type_name_);
  m->train(training_);
  children_.emplace_back(name, std::move(m));
}

void Module::collect(const std::string& prefix, std::vector<NamedParam>& out) const {
  for (const auto& p : params_) out.push_back({prefix + p.name, &p});
  for (const auto& [n, c] : children_) c->collect(prefix + n + ".", out);
}

std::vector<std::pair<std::string, Tensor>> Module::named_parameters() const {
  std::vector<NamedParam> all;
  collect("", all);
  std::vector<std::pair<std::string, Tensor>> out;
  std::set<const TensorImpl*> seen;
  for (const auto& np : all)
    if (seen.insert(np.param->tensor.impl()).second) out.emplace_back(np.name, np.param->tensor);
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [n, t] : named_parameters()) out.push_back(t);
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules() {
  std::vector<std::pair<std::string, Module*>> out{{"", this}};
  for (const auto& [n, c] : children_)
    for (auto& [sub, m] : c->named_modules()) out.emplace_back(sub.empty() ? n : n + "." + sub, m);
  return out;
}

const Module::Param* Module::find(const std::string& full_name) const {
  const auto dot = full_name.find('.');
  if (dot == std::string::npos) {
    for (const auto& p : params_)
      if (p.name == full_name) return &p;
    return nullptr;
  }
  const std::string head = full_name.substr(0, dot);
  for (const auto& [n, c] : children_)
    if (n == head) return c->find(full_name.substr(dot + 1));
  return nullptr;
}

Module::Param* Module::find(const std::string& full_name) {
  return const_cast<Param*>(std::as_const(*this).find(full_name));
}

bool Module::has_parameter(const std::string& full_name) const {
  return find(full_name) != nullptr;
}

Tensor Module::parameter(const std::string& full_name) const {
  if (const Param* p = find(full_name)) return p->tensor;
  std::vector<std::string> names;
  for (const auto& [n, t] : named_parameters()) names.push_back(n);
  const std::string nearest = strata::nearest(full_name, names);
  STRATA_CHECK(false, type_name_, ": no parameter '", full_name, "'",
               nearest.empty() ? std::string() : "; nearest is '" + nearest + "'");
  return {};
}

void Module::load_parameter(const std::string& full_name, const Tensor& value) {
  Tensor dst = parameter(full_name);
  const Sharding& sh = find(full_name)->sharding;
  const bool global = !sh.is_replicated() && value.shape() == sh.global_shape;
  STRATA_CHECK(global || value.shape() == dst.shape(), "load_parameter: '", full_name,
               "' has shape ", shape_str(dst.shape()),
               sh.is_replicated() ? std::string() : " (global " + shape_str(sh.global_shape) + ")",
               ", got ", shape_str(value.shape()));
  Tensor src = global ? sh.local_slice(value) : value;
  NoGradGuard guard;
  if (src.dtype() != dst.dtype()) src = src.to(dst.dtype());
  // A checkpoint's host tensor into a parameter on a GPU: converted where it is, then moved.
  if (src.device() != dst.device()) src = src.contiguous().to(dst.device());
  dst.copy_(src);
}

const Sharding& Module::sharding(const std::string& full_name) const {
  parameter(full_name);  // throws naming the nearest valid name
  return find(full_name)->sharding;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (const auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [n, c] : children_) c->train(on);
}

void Module::to(DType dtype) {
  // A tied weight appears in two modules: convert it once and hand both slots the same tensor.
  std::vector<std::pair<const TensorImpl*, Tensor>> converted;
  for (auto& [name, m] : named_modules())
    for (auto& p : m->params_) {
      const TensorImpl* old = p.tensor.impl();
      auto it = std::find_if(converted.begin(), converted.end(),
                             [&](const auto& c) { return c.first == old; });
      if (it == converted.end()) {
        Tensor t = p.tensor.dtype() == dtype ? p.tensor : p.tensor.detach().to(dtype);
        t = t.detach();
        t.set_requires_grad(true);
        t.set_grad(Tensor());
        converted.emplace_back(old, t);
        it = converted.end() - 1;
      }
      p.tensor = it->second;
    }
}

namespace {

// Gives `impl` a copy of its data on `device` (a new contiguous storage), keeping the impl.
void move_impl(TensorImpl& impl, Device device) {
  if (impl.storage->device() == device) return;
  auto alias = std::make_shared<TensorImpl>();  // the data only: no autograd state to copy
  alias->shape = impl.shape;
  alias->strides = impl.strides;
  alias->offset = impl.offset;
  alias->dtype = impl.dtype;
  alias->storage = impl.storage;
  const Tensor moved = Tensor(std::move(alias)).contiguous().to(device);
  impl.storage = moved.impl()->storage;
  impl.offset = moved.offset();
  impl.strides = moved.strides();
}

}  // namespace

void Module::to(Device device) {
  NoGradGuard guard;
  std::set<TensorImpl*> moved;  // a tied weight is one impl in two slots: moved once
  for (auto& [name, m] : named_modules())
    for (auto& p : m->params_) {
      TensorImpl* impl = p.tensor.impl();
      if (!moved.insert(impl).second) continue;
      move_impl(*impl, device);
      if (impl->grad) move_impl(*impl->grad, device);
    }
}

Device Module::device() const {
  auto ps = named_parameters();
  return ps.empty() ? Device::cpu() : ps.front().second.device();
}

DType Module::dtype() const {
  auto ps = named_parameters();
  return ps.empty() ? DType::f32 : ps.front().second.dtype();
}

void Module::zero_grad() {
  for (auto& t : parameters()) t.set_grad(Tensor());
}

void Module::init_parameters(uint64_t seed) {
  std::vector<NamedParam> all;
  collect("", all);
  std::set<const TensorImpl*> seen;
  NoGradGuard guard;
  for (const auto& np : all) {
    Tensor dst = np.param->tensor;
    if (!seen.insert(dst.impl()).second) continue;
    const Init& init = np.param->init;
    // Drawn in f64 when the parameter is f64, else f32 (bf16 rounds from the f32 draw).
    const DType draw = dst.dtype() == DType::f64 ? DType::f64 : DType::f32;
    // A shard takes its slice of the global tensor's numbers: a dim-0 slice is one contiguous
    // run of element indices (Philox's index_offset); other splits draw the global tensor.
    const Sharding& sh = np.param->sharding;
    const bool row_slice = sh.is_replicated() || sh.dim == 0;
    RandomKey key{seed, uint32_t(RngStream::Init), stable_name_hash(np.name), 0};
    if (!sh.is_replicated() && row_slice)
      key.index_offset = uint64_t(sh.offset() * (numel(sh.global_shape) / sh.global_shape[0]));
    const Shape& shape = row_slice ? dst.shape() : sh.global_shape;
    Tensor v;
    switch (init.kind) {
      case Init::Kind::Normal:
        v = randn(shape, key, draw, init.a, init.b);
        break;
      case Init::Kind::Uniform:
        v = rand(shape, key, draw, init.a, init.b);
        break;
      case Init::Kind::Constant:
        v = full(shape, init.a, draw);
        break;
    }
    if (!row_slice) v = sh.local_slice(v);
    if (draw != dst.dtype()) v = v.to(dst.dtype());
    if (v.device() != dst.device()) v = v.contiguous().to(dst.device());
    dst.copy_(v);
  }
}

}  // namespace strata::models
