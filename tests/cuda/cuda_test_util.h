#pragma once
// Helpers of the `cuda` suite: moving case inputs to the GPU and comparing against the CPU.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/ops.h"

namespace strata::cuda_test {

// |got - want| <= atol + rtol * |want| element-wise; reports the worst element.
inline void expect_close(const Tensor& got, const Tensor& want, double rtol, double atol,
                         const std::string& what) {
  ASSERT_EQ(got.shape(), want.shape()) << what;
  const std::vector<double> g = got.to_vector<double>();
  const std::vector<double> w = want.to_vector<double>();
  size_t worst = 0;
  double worst_excess = -1;
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const bool both_nan = std::isnan(g[i]) && std::isnan(w[i]);
    const double err = both_nan ? 0.0 : std::abs(g[i] - w[i]);
    const double excess = std::isnan(err) ? 1e300 : err - (atol + rtol * std::abs(w[i]));
    if (excess > 0) ++bad;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
    }
  }
  EXPECT_EQ(bad, 0) << what << ": " << bad << " of " << g.size()
                    << " elements off; worst at flat index " << worst << ": got " << g[worst]
                    << ", want " << w[worst] << " (rtol " << rtol << ", atol " << atol << ")";
}

// A GPU copy of a CPU input that keeps its requires_grad (a new leaf).
inline Tensor to_gpu_leaf(const Tensor& x, int device = 0) {
  Tensor g;
  {
    NoGradGuard no_grad;
    g = x.detach().to(Device::cuda(device));
  }
  if (x.requires_grad()) g.set_requires_grad(true);
  return g;
}

}  // namespace strata::cuda_test
