#pragma once
// Device-side element types and the dtype switch shared by the CUDA kernels. Kernels are written
// once over the storage type T and compute in acc_t<T> (f32 for bf16 and f32, f64 for f64), as the
// CPU kernels do, so a bf16 kernel rounds only when it stores.
#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>

#include "core/dtype.h"
#include "core/error.h"

namespace strata::cuda {

// The storage type a kernel sees for each DType (strata::bf16 and __nv_bfloat16 share bits).
template <DType D>
struct device_type;
template <>
struct device_type<DType::f32> {
  using type = float;
};
template <>
struct device_type<DType::f64> {
  using type = double;
};
template <>
struct device_type<DType::bf16> {
  using type = __nv_bfloat16;
};
template <>
struct device_type<DType::i32> {
  using type = int32_t;
};
template <>
struct device_type<DType::i64> {
  using type = int64_t;
};
template <>
struct device_type<DType::b8> {
  using type = bool;
};

template <class T>
struct acc_type {
  using type = T;
};
template <>
struct acc_type<__nv_bfloat16> {
  using type = float;
};
template <>
struct acc_type<bool> {
  using type = float;
};
template <>
struct acc_type<int32_t> {
  using type = double;
};
template <>
struct acc_type<int64_t> {
  using type = double;
};
template <class T>
using acc_t = typename acc_type<T>::type;

// Conversions that also cover bf16 (whose constructors are not usable in every direction).
template <class To, class From>
__host__ __device__ inline To convert(From x) {
  if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return __float2bfloat16_rn(float(x));
  } else if constexpr (std::is_same_v<From, __nv_bfloat16>) {
    return To(__bfloat162float(x));
  } else {
    return To(x);
  }
}

}  // namespace strata::cuda

// STRATA_CUDA_DISPATCH_FLOAT(dtype, "op", [&]<class T>() { ... }) calls the lambda with
// T = float, double or __nv_bfloat16; any other dtype is an error naming the op.
#define STRATA_CUDA_DISPATCH_FLOAT(dtype, op_name, fn)                                   \
  [&] {                                                                                  \
    switch (dtype) {                                                                     \
      case ::strata::DType::f32:                                                         \
        return fn.template operator()<float>();                                          \
      case ::strata::DType::f64:                                                         \
        return fn.template operator()<double>();                                         \
      case ::strata::DType::bf16:                                                        \
        return fn.template operator()<__nv_bfloat16>();                                  \
      default:                                                                           \
        STRATA_FAIL(op_name, ": CUDA kernel for dtype ", ::strata::dtype_name(dtype),      \
                    " is not available (expected f32, f64 or bf16)");                    \
    }                                                                                    \
  }()

// As above, plus i32, i64 and bool.
#define STRATA_CUDA_DISPATCH_ALL(dtype, op_name, fn)            \
  [&] {                                                         \
    switch (dtype) {                                            \
      case ::strata::DType::f32:                                \
        return fn.template operator()<float>();                 \
      case ::strata::DType::f64:                                \
        return fn.template operator()<double>();                \
      case ::strata::DType::bf16:                               \
        return fn.template operator()<__nv_bfloat16>();         \
      case ::strata::DType::i32:                                \
        return fn.template operator()<int32_t>();               \
      case ::strata::DType::i64:                                \
        return fn.template operator()<int64_t>();               \
      case ::strata::DType::b8:                                 \
        return fn.template operator()<bool>();                  \
    }                                                           \
    STRATA_FAIL(op_name, ": unknown dtype");                    \
  }()
