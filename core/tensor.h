#pragma once
// Tensor: a cheap, copyable handle to a TensorImpl (shape, strides, offset, dtype, shared
// Storage, autograd metadata). Copying a Tensor copies the handle; views share storage.
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/shape.h"
#include "core/storage.h"

namespace strata {

namespace autograd {
class Node;
}
class Tensor;

using GradReadyHook = std::function<void(const Tensor& grad)>;

struct TensorImpl {
  Shape shape;
  Shape strides;
  int64_t offset = 0;
  DType dtype = DType::f32;
  std::shared_ptr<Storage> storage;

  // Autograd metadata. A tensor produced by a differentiable op has grad_fn; a leaf that
  // requires grad gets its gradient accumulated into `grad` by an AccumulateGrad node.
  bool requires_grad = false;
  std::shared_ptr<TensorImpl> grad;
  std::shared_ptr<autograd::Node> grad_fn;
  uint32_t output_nr = 0;
  std::weak_ptr<autograd::Node> grad_accumulator;
  std::vector<GradReadyHook> grad_ready_hooks;
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // Uninitialised memory from the device's caching allocator.
  static Tensor empty(Shape shape, DType dtype = DType::f32, Device device = Device::cpu());
  // Uninitialised page-locked host memory: a CPU tensor that copies to a GPU asynchronously (loader
  // batches). Needs the CUDA build and a GPU. Fill a fresh one per batch: a copy from it may still
  // be running after .to(cuda) returns.
  static Tensor empty_pinned(Shape shape, DType dtype = DType::f32);

  bool defined() const { return impl_ != nullptr; }
  TensorImpl* impl() const { return impl_.get(); }
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }
  bool is_same(const Tensor& o) const { return impl_ == o.impl_; }

  const Shape& shape() const { return checked()->shape; }
  const Shape& strides() const { return checked()->strides; }
  int64_t dim() const { return int64_t(shape().size()); }
  int64_t size(int64_t d) const;
  int64_t stride(int64_t d) const;
  int64_t numel() const { return strata::numel(shape()); }
  int64_t offset() const { return checked()->offset; }
  DType dtype() const { return checked()->dtype; }
  Device device() const { return checked()->storage->device(); }
  size_t element_size() const { return dtype_size(dtype()); }
  bool is_contiguous() const;
  Storage& storage() const { return *checked()->storage; }
  bool is_pinned() const;

  // Address of the first element (storage base + offset).
  void* raw_data() const {
    return static_cast<char*>(storage().data()) + offset() * int64_t(element_size());
  }
  // Typed pointer into CPU memory; throws if the dtype or device does not match.
  template <class T>
  T* data() const {
    check_access(dtype_of<T>(), "data");
    return static_cast<T*>(raw_data());
  }
  // The value of a one-element tensor, converted to T. A GPU tensor is copied to the host first,
  // which waits for the device's queued work (as to_vector and str do).
  template <class T>
  T item() const;
  // All elements in logical (row-major) order.
  template <class T>
  std::vector<T> to_vector() const;

  // Autograd.
  bool requires_grad() const { return checked()->requires_grad; }
  Tensor& set_requires_grad(bool r);
  bool is_leaf() const { return checked()->grad_fn == nullptr; }
  const std::shared_ptr<autograd::Node>& grad_fn() const { return checked()->grad_fn; }
  Tensor grad() const { return Tensor(checked()->grad); }
  void set_grad(const Tensor& g) { checked()->grad = g.impl_; }
  // Backpropagates from this tensor. A non-scalar needs an explicit `grad` of the same shape.
  void backward(const Tensor& grad = {}, bool retain_graph = false) const;
  // Same data, no history.
  Tensor detach() const;
  // Called once per backward pass when this leaf's gradient is final (all contributions summed).
  void register_grad_ready_hook(GradReadyHook hook);

  // Views (share storage; differentiable).
  Tensor view(const Shape& shape) const;
  Tensor reshape(const Shape& shape) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor narrow(int64_t dim, int64_t start, int64_t length) const;
  Tensor select(int64_t dim, int64_t index) const;
  Tensor expand(const Shape& shape) const;
  Tensor squeeze(int64_t dim) const;
  Tensor unsqueeze(int64_t dim) const;
  Tensor flatten(int64_t start = 0, int64_t end = -1) const;
  Tensor t() const { return transpose(-2, -1); }

  Tensor contiguous() const;
  Tensor clone() const;
  Tensor to(DType dtype) const;
  // A copy on `device` (this tensor itself when already there). Differentiable: the gradient
  // moves back to this tensor's device.
  Tensor to(Device device) const;
  // A pinned copy of a CPU tensor (see empty_pinned).
  Tensor pin_memory() const;

  // In-place writes. Not differentiable: they throw on a tensor that requires grad while grad
  // mode is on, and bump the storage version so saved tensors are checked.
  Tensor& zero_();
  Tensor& fill_(double value);
  Tensor& copy_(const Tensor& src);
  Tensor& add_(const Tensor& other, double alpha = 1.0);
  Tensor& mul_(double value);

  std::string str(int64_t max_elements = 16) const;

 private:
  TensorImpl* checked() const;
  void check_access(DType want, const char* what) const;
  std::shared_ptr<TensorImpl> impl_;
};

// Wraps existing memory layout pieces into a new impl sharing `base`'s storage.
Tensor make_view(const Tensor& base, Shape shape, Shape strides, int64_t offset);

}  // namespace strata
