// Dropout's row mapping (RandomKey::row_first / row_stride): a data-parallel rank holding rows
// r, r + dp, ... of a batch draws exactly the masks one process draws for those rows, forward and
// backward, and the default mapping is the contiguous one.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "core/error.h"
#include "core/ops.h"
#include "core/random/philox.h"

namespace strata {
namespace {

constexpr double kP = 0.3;

RandomKey key_for(int64_t first, int64_t stride) {
  RandomKey k{17, uint32_t(RngStream::Dropout), 5, 0};
  k.row_first = first;
  k.row_stride = stride;
  return k;
}

// Rows first, first + stride, ... of t.
Tensor rows_of(const Tensor& t, int64_t first, int64_t stride) {
  return index_select(t, 0, arange(first, t.size(0), stride));
}

bool bitwise_equal(const Tensor& a, const Tensor& b) {
  const Tensor x = a.contiguous(), y = b.contiguous();
  return x.shape() == y.shape() &&
         std::memcmp(x.raw_data(), y.raw_data(), size_t(x.numel()) * x.element_size()) == 0;
}

TEST(DropoutRows, ExplicitContiguousMappingIsTheDefault) {
  const Tensor x = randn({4, 3, 5}, RandomKey{1}, DType::f32);
  const RandomKey plain{17, uint32_t(RngStream::Dropout), 5, 0};
  EXPECT_TRUE(bitwise_equal(dropout(x, kP, plain), dropout(x, kP, key_for(0, 1))));
  // A mapping that moves rows draws other masks.
  EXPECT_FALSE(bitwise_equal(dropout(x, kP, plain), dropout(x, kP, key_for(1, 1))));
}

TEST(DropoutRows, RankRowsDrawTheWholeBatchMasks) {
  const Tensor x = randn({6, 3, 5}, RandomKey{2}, DType::f32);
  const Tensor whole = dropout(x, kP, key_for(0, 1));
  for (int64_t dp : {2, 3})
    for (int64_t r = 0; r < dp; ++r) {
      SCOPED_TRACE("dp " + std::to_string(dp) + " rank " + std::to_string(r));
      const Tensor mine = dropout(rows_of(x, r, dp), kP, key_for(r, dp));
      EXPECT_TRUE(bitwise_equal(mine, rows_of(whole, r, dp)));
    }
}

TEST(DropoutRows, BackwardUsesTheSameMapping) {
  const Tensor x = randn({4, 7}, RandomKey{3}, DType::f64);
  Tensor full_in = x.detach();
  full_in.set_requires_grad(true);
  sum(dropout(full_in, kP, key_for(0, 1))).backward();
  Tensor local = rows_of(x, 1, 2).detach();
  local.set_requires_grad(true);
  sum(dropout(local, kP, key_for(1, 2))).backward();
  EXPECT_TRUE(bitwise_equal(local.grad(), rows_of(full_in.grad(), 1, 2)));
  // Some elements are dropped and some kept, so the comparison sees both.
  const auto g = local.grad().to_vector<double>();
  EXPECT_NE(std::count(g.begin(), g.end(), 0.0), 0);
  EXPECT_NE(std::count(g.begin(), g.end(), 0.0), std::ptrdiff_t(g.size()));
}

TEST(DropoutRows, MappingNeedsARowDimension) {
  const Tensor scalar = full({}, 1.0);
  EXPECT_THROW(dropout(scalar, kP, key_for(1, 2)), Error);
  EXPECT_THROW(dropout(ones({2, 2}), kP, key_for(0, 0)), Error);
}

}  // namespace
}  // namespace strata
