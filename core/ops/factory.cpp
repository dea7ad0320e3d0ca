#include "core/ops/factory.h"

namespace strata {

Tensor empty(const Shape& shape, DType dtype, Device device) {
  return Tensor::empty(shape, dtype, device);
}

Tensor full(const Shape& shape, double value, DType dtype, Device device) {
  Tensor t = Tensor::empty(shape, dtype, device);
  backend_for(device).fill(t, value);
  return t;
}

Tensor zeros(const Shape& shape, DType dtype, Device device) {
  return full(shape, 0.0, dtype, device);
}
Tensor ones(const Shape& shape, DType dtype, Device device) {
  return full(shape, 1.0, dtype, device);
}
Tensor zeros_like(const Tensor& t) {
  return zeros(t.shape(), t.dtype(), t.device());
}
Tensor ones_like(const Tensor& t) {
  return ones(t.shape(), t.dtype(), t.device());
}
Tensor scalar_tensor(double value, DType dtype, Device device) {
  return full({}, value, dtype, device);
}

Tensor arange(int64_t start, int64_t end, int64_t step, DType dtype) {
  STRATA_CHECK(step != 0, "arange: step must be non-zero");
  const int64_t n = std::max<int64_t>(0, (end - start + step - (step > 0 ? 1 : -1)) / step);
  std::vector<int64_t> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = start + i * step;
  return from_vector(v, {n}).to(dtype);
}

template <class T>
Tensor from_vector(const std::vector<T>& values, const Shape& shape) {
  STRATA_CHECK(int64_t(values.size()) == numel(shape), "from_vector: ", values.size(),
               " values for shape ", shape_str(shape), " (", numel(shape), " elements)");
  Tensor t = Tensor::empty(shape, dtype_of<T>());
  std::copy(values.begin(), values.end(), t.data<T>());
  return t;
}
template Tensor from_vector(const std::vector<float>&, const Shape&);
template Tensor from_vector(const std::vector<double>&, const Shape&);
template Tensor from_vector(const std::vector<int32_t>&, const Shape&);
template Tensor from_vector(const std::vector<int64_t>&, const Shape&);
template Tensor from_vector(const std::vector<bf16>&, const Shape&);

template <>
Tensor from_vector(const std::vector<bool>& values, const Shape& shape) {
  STRATA_CHECK(int64_t(values.size()) == numel(shape), "from_vector: ", values.size(),
               " values for shape ", shape_str(shape));
  Tensor t = Tensor::empty(shape, DType::b8);
  bool* p = t.data<bool>();
  for (size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return t;
}

Tensor rand(const Shape& shape, RandomKey key, DType dtype, double lo, double hi) {
  Tensor t = Tensor::empty(shape, dtype);
  backend_for(t.device()).uniform(t, key, lo, hi);
  return t;
}

Tensor randn(const Shape& shape, RandomKey key, DType dtype, double mean, double std) {
  Tensor t = Tensor::empty(shape, dtype);
  backend_for(t.device()).normal(t, key, mean, std);
  return t;
}

}  // namespace strata
