#pragma once
// Reductions over any set of dims (empty = all dims).
#include <vector>

#include "core/tensor.h"

namespace strata {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Maximum / minimum values; ties share the gradient evenly.
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);  // i64, first maximum
Tensor logsumexp(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim = false);
// Euclidean norm sqrt(sum x^2).
Tensor norm(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Cumulative sum along dim.
Tensor cumsum(const Tensor& x, int64_t dim);

// Sums a broadcast gradient back to `shape` (the inverse of broadcasting).
Tensor sum_to(const Tensor& g, const Shape& shape);

}  // namespace strata
