#pragma once
// View ops (share storage, differentiable), copies, and joining/splitting.
#include <vector>

#include "core/tensor.h"

namespace strata {

Tensor view(const Tensor& x, const Shape& shape);     // needs a compatible (viewable) layout
Tensor reshape(const Tensor& x, const Shape& shape);  // views when possible, copies otherwise
Tensor transpose(const Tensor& x, int64_t d0, int64_t d1);
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor narrow(const Tensor& x, int64_t dim, int64_t start, int64_t length);
Tensor select(const Tensor& x, int64_t dim, int64_t index);
Tensor expand(const Tensor& x, const Shape& shape);
Tensor squeeze(const Tensor& x, int64_t dim);
Tensor unsqueeze(const Tensor& x, int64_t dim);
Tensor flatten(const Tensor& x, int64_t start = 0, int64_t end = -1);

Tensor contiguous(const Tensor& x);
Tensor clone(const Tensor& x);
Tensor to_dtype(const Tensor& x, DType dtype);

Tensor cat(const std::vector<Tensor>& xs, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
std::vector<Tensor> chunk(const Tensor& x, int64_t chunks, int64_t dim);

// A zero-stride broadcast view with no autograd record: for feeding kernels, not for models.
Tensor broadcast_to(const Tensor& x, const Shape& shape);

}  // namespace strata
