#pragma once
// Checks for CUDA runtime calls: a failure throws strata::Error naming the call, where it was made
// and CUDA's own description, so an out-of-memory or a launch error reads like any other error.
#include <cuda_runtime.h>

#include "core/error.h"

namespace strata::cuda::detail {
[[noreturn]] inline void fail_cuda(cudaError_t e, const char* expr, const char* file, int line) {
  STRATA_FAIL("CUDA error ", cudaGetErrorName(e), " (", cudaGetErrorString(e), ") in ", expr,
              " at ", file, ":", line);
}
}  // namespace strata::cuda::detail

#define STRATA_CUDA_CHECK(expr)                                                      \
  do {                                                                               \
    const cudaError_t strata_cuda_err_ = (expr);                                     \
    if (strata_cuda_err_ != cudaSuccess)                                             \
      ::strata::cuda::detail::fail_cuda(strata_cuda_err_, #expr, __FILE__, __LINE__); \
  } while (0)

// After a kernel launch: reports a bad launch configuration at the launch site rather than at
// the next synchronising call.
#define STRATA_CUDA_CHECK_LAUNCH() STRATA_CUDA_CHECK(cudaGetLastError())
