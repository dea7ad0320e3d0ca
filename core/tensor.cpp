#include "core/tensor.h"

#include <sstream>

#include "core/autograd/engine.h"
#include "core/autograd/grad_mode.h"
#include "core/autograd/node.h"
#include "core/backend.h"
#include "core/ops/elementwise.h"
#include "core/ops/factory.h"
#include "core/ops/shape.h"
#include "core/ops/transfer.h"
#include "core/runtime.h"

namespace strata {

Tensor Tensor::empty(Shape shape, DType dtype, Device device) {
  for (int64_t s : shape) STRATA_CHECK(s >= 0, "empty: negative size in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  const size_t nbytes = size_t(strata::numel(shape)) * dtype_size(dtype);
  impl->storage = std::make_shared<Storage>(&Runtime::get().allocator(device), nbytes);
  impl->strides = contiguous_strides(shape);
  impl->shape = std::move(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

Tensor Tensor::empty_pinned(Shape shape, DType dtype) {
  for (int64_t s : shape)
    STRATA_CHECK(s >= 0, "empty_pinned: negative size in shape ", shape_str(shape));
  auto impl = std::make_shared<TensorImpl>();
  const size_t nbytes = size_t(strata::numel(shape)) * dtype_size(dtype);
  impl->storage = std::make_shared<Storage>(&Runtime::get().pinned_allocator(), nbytes);
  impl->strides = contiguous_strides(shape);
  impl->shape = std::move(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

bool Tensor::is_pinned() const {
  const Allocator* a = storage().allocator();
  return a != nullptr && a->is_pinned();
}

TensorImpl* Tensor::checked() const {
  STRATA_CHECK(impl_, "operation on an undefined tensor (default-constructed or moved-from)");
  return impl_.get();
}

void Tensor::check_access(DType want, const char* what) const {
  STRATA_CHECK(dtype() == want, what, "<", dtype_name(want), ">: tensor has dtype ",
               dtype_name(dtype()));
  STRATA_CHECK(device().is_cpu(), what, ": tensor is on ", device().str(),
               "; copy it to the CPU first");
}

int64_t Tensor::size(int64_t d) const {
  return shape()[wrap_dim(d, dim(), "size")];
}
int64_t Tensor::stride(int64_t d) const {
  return strides()[wrap_dim(d, dim(), "stride")];
}

bool Tensor::is_contiguous() const {
  int64_t expect = 1;
  for (int64_t i = dim() - 1; i >= 0; --i) {
    if (shape()[i] == 1) continue;
    if (strides()[i] != expect) return false;
    expect *= shape()[i];
  }
  return true;
}

template <class T>
T Tensor::item() const {
  STRATA_CHECK(numel() == 1, "item: tensor has ", numel(), " elements (shape ", shape_str(shape()),
               "), expected exactly one");
  NoGradGuard no_grad;
  Tensor c = to(Device::cpu()).to(dtype_of<T>()).contiguous();
  return *c.data<T>();
}

template <class T>
std::vector<T> Tensor::to_vector() const {
  NoGradGuard no_grad;
  Tensor c = to(Device::cpu()).to(dtype_of<T>()).contiguous();
  const T* p = c.data<T>();
  return std::vector<T>(p, p + c.numel());
}

#define STRATA_INSTANTIATE(T)         \
  template T Tensor::item<T>() const; \
  template std::vector<T> Tensor::to_vector<T>() const;
STRATA_INSTANTIATE(float)
STRATA_INSTANTIATE(double)
STRATA_INSTANTIATE(int32_t)
STRATA_INSTANTIATE(int64_t)
STRATA_INSTANTIATE(bool)
STRATA_INSTANTIATE(bf16)
#undef STRATA_INSTANTIATE

Tensor& Tensor::set_requires_grad(bool r) {
  STRATA_CHECK(!r || is_floating(dtype()),
               "set_requires_grad: only floating tensors can require "
               "grad, this one is ",
               dtype_name(dtype()));
  STRATA_CHECK(is_leaf() || r, "set_requires_grad(false) on a non-leaf; use detach()");
  checked()->requires_grad = r;
  return *this;
}

void Tensor::backward(const Tensor& grad, bool retain_graph) const {
  Tensor g = grad;
  if (!g.defined()) {
    STRATA_CHECK(numel() == 1, "backward: output has shape ", shape_str(shape()),
                 "; a non-scalar output needs an explicit gradient of the same shape");
    g = ones(shape(), dtype(), device());
  }
  autograd::run_backward({*this}, {g}, retain_graph);
}

Tensor Tensor::detach() const {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = shape();
  impl->strides = strides();
  impl->offset = offset();
  impl->dtype = dtype();
  impl->storage = checked()->storage;
  return Tensor(std::move(impl));
}

void Tensor::register_grad_ready_hook(GradReadyHook hook) {
  STRATA_CHECK(is_leaf() && requires_grad(),
               "register_grad_ready_hook: only a leaf that requires grad has a final gradient");
  checked()->grad_ready_hooks.push_back(std::move(hook));
}

Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->shape = std::move(shape);
  impl->strides = std::move(strides);
  impl->offset = offset;
  impl->dtype = base.dtype();
  impl->storage = base.impl()->storage;
  return Tensor(std::move(impl));
}

Tensor Tensor::view(const Shape& s) const {
  return strata::view(*this, s);
}
Tensor Tensor::reshape(const Shape& s) const {
  return strata::reshape(*this, s);
}
Tensor Tensor::transpose(int64_t a, int64_t b) const {
  return strata::transpose(*this, a, b);
}
Tensor Tensor::permute(const std::vector<int64_t>& d) const {
  return strata::permute(*this, d);
}
Tensor Tensor::narrow(int64_t d, int64_t s, int64_t l) const {
  return strata::narrow(*this, d, s, l);
}
Tensor Tensor::select(int64_t d, int64_t i) const {
  return strata::select(*this, d, i);
}
Tensor Tensor::expand(const Shape& s) const {
  return strata::expand(*this, s);
}
Tensor Tensor::squeeze(int64_t d) const {
  return strata::squeeze(*this, d);
}
Tensor Tensor::unsqueeze(int64_t d) const {
  return strata::unsqueeze(*this, d);
}
Tensor Tensor::flatten(int64_t s, int64_t e) const {
  return strata::flatten(*this, s, e);
}
Tensor Tensor::contiguous() const {
  return strata::contiguous(*this);
}
Tensor Tensor::clone() const {
  return strata::clone(*this);
}
Tensor Tensor::to(DType t) const {
  return strata::to_dtype(*this, t);
}
Tensor Tensor::to(Device d) const {
  return strata::to_device(*this, d);
}
Tensor Tensor::pin_memory() const {
  STRATA_CHECK(device().is_cpu(), "pin_memory: tensor is on ", device().str(),
               "; only CPU tensors can be pinned");
  Tensor out = empty_pinned(shape(), dtype());
  backend_for(Device::cpu()).copy(*this, out);
  return out;
}

namespace {
void check_inplace(const Tensor& t, const char* op) {
  STRATA_CHECK(!(GradMode::is_enabled() && t.requires_grad()), op,
               ": in-place write to a tensor that requires grad while grad mode is on; wrap it in "
               "NoGradGuard (optimizer updates) or use the out-of-place op");
}
}  // namespace

Tensor& Tensor::zero_() {
  return fill_(0.0);
}

Tensor& Tensor::fill_(double value) {
  check_inplace(*this, "fill_");
  backend_for(device()).fill(*this, value);
  storage().bump_version();
  return *this;
}

Tensor& Tensor::copy_(const Tensor& src) {
  check_inplace(*this, "copy_");
  STRATA_CHECK(broadcast_shapes(src.shape(), shape(), "copy_") == shape(),
               "copy_: source of shape ", shape_str(src.shape()),
               " does not broadcast to destination ", shape_str(shape()));
  if (src.device() == device())
    backend_for(device()).copy(broadcast_to(src, shape()), *this);
  else
    copy_across_devices(broadcast_to(src, shape()), *this);
  storage().bump_version();
  return *this;
}

Tensor& Tensor::add_(const Tensor& other, double alpha) {
  check_inplace(*this, "add_");
  check_same_device("add_", "the tensor", *this, "the addend", other);
  STRATA_CHECK(other.dtype() == dtype(), "add_: dtype ", dtype_name(other.dtype()), " added into ",
               dtype_name(dtype()));
  Tensor rhs = alpha == 1.0 ? other : other * alpha;
  STRATA_CHECK(broadcast_shapes(rhs.shape(), shape(), "add_") == shape(), "add_: shape ",
               shape_str(rhs.shape()), " does not broadcast to ", shape_str(shape()));
  // The kernel writes element by element reading the same element first, so out may alias a.
  backend_for(device()).binary(BinaryOp::Add, *this, rhs.expand(shape()), *this);
  storage().bump_version();
  return *this;
}

Tensor& Tensor::mul_(double value) {
  check_inplace(*this, "mul_");
  backend_for(device()).unary(UnaryOp::Affine, *this, *this, {value, 0.0});
  storage().bump_version();
  return *this;
}

std::string Tensor::str(int64_t max_elements) const {
  std::ostringstream os;
  os << "Tensor(" << shape_str(shape()) << ", " << dtype_name(dtype()) << ", " << device().str();
  if (requires_grad()) os << ", requires_grad";
  os << ") [";
  const auto v = to_vector<double>();
  for (int64_t i = 0; i < std::min<int64_t>(max_elements, int64_t(v.size())); ++i)
    os << (i ? ", " : "") << v[i];
  if (int64_t(v.size()) > max_elements) os << ", ...";
  os << "]";
  return os.str();
}

}  // namespace strata
