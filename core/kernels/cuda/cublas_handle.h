#pragma once
// cuBLAS state for each device: a cuBLASLt handle (bf16 and f32 GEMMs), a legacy cuBLAS handle
// (f64, and the fallback when cuBLASLt offers no algorithm) bound to the device's compute stream,
// and one workspace both use. Both libraries run on cuda::stream(device) only, so the shared
// workspace is never used by two GEMMs at once.
#include <cublasLt.h>
#include <cublas_v2.h>

#include <cstddef>

#include "core/error.h"

namespace strata::cuda {

struct BlasHandles {
  cublasLtHandle_t lt = nullptr;
  cublasHandle_t blas = nullptr;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
};

// Created on first use for `device` (thread-safe) and kept for the life of the process.
const BlasHandles& blas_handles(int device);

namespace detail {
[[noreturn]] void fail_cublas(cublasStatus_t status, const char* expr, const char* file, int line);
}  // namespace detail

}  // namespace strata::cuda

// Throws strata::Error naming the call, cuBLAS's status name and where it was made.
#define STRATA_CUBLAS_CHECK(expr)                                                            \
  do {                                                                                       \
    const cublasStatus_t strata_cublas_status_ = (expr);                                     \
    if (strata_cublas_status_ != CUBLAS_STATUS_SUCCESS)                                      \
      ::strata::cuda::detail::fail_cublas(strata_cublas_status_, #expr, __FILE__, __LINE__); \
  } while (0)
