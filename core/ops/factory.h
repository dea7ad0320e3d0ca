#pragma once
// Tensor creation. Random tensors are pure functions of (seed, stream, step, element index).
#include <vector>

#include "core/backend.h"
#include "core/tensor.h"

namespace strata {

Tensor empty(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor zeros(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor ones(const Shape& shape, DType dtype = DType::f32, Device device = Device::cpu());
Tensor full(const Shape& shape, double value, DType dtype = DType::f32,
            Device device = Device::cpu());
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor scalar_tensor(double value, DType dtype = DType::f32, Device device = Device::cpu());
// [start, end) with `step`, as dtype (i64 by default).
Tensor arange(int64_t start, int64_t end, int64_t step = 1, DType dtype = DType::i64);
// Copies host values into a new CPU tensor of the given shape (numel must match).
template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape);
Tensor rand(const Shape& shape, RandomKey key, DType dtype = DType::f32, double lo = 0,
            double hi = 1);
Tensor randn(const Shape& shape, RandomKey key, DType dtype = DType::f32, double mean = 0,
             double std = 1);

}  // namespace strata
