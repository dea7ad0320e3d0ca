#pragma once
// Shapes and strides are small vectors of int64 counted in elements.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace strata {

using Shape = std::vector<int64_t>;

int64_t numel(std::span<const int64_t> shape);
Shape contiguous_strides(std::span<const int64_t> shape);
std::string shape_str(std::span<const int64_t> shape);

// Broadcast two shapes by NumPy rules; throws naming `op` and both shapes when they do not fit.
Shape broadcast_shapes(std::span<const int64_t> a, std::span<const int64_t> b, std::string_view op);

// Normalise a possibly negative dim against rank; throws naming `op` when out of range.
int64_t wrap_dim(int64_t dim, int64_t rank, std::string_view op);

// Sorted, de-duplicated, wrapped dims; empty input means all dims.
std::vector<int64_t> normalize_dims(std::span<const int64_t> dims, int64_t rank,
                                    std::string_view op);

}  // namespace strata
