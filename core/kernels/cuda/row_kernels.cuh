#pragma once
// Shared pieces of the CUDA row kernels (softmax, norms, cross-entropy): who owns a row, the
// reductions over it, and the launch shape.
//
// A row belongs to one warp (short rows) or to one block (long rows). Each thread reduces the
// elements j = rank, rank + threads, ... in order, then the threads' partials are combined by a
// butterfly within each warp and by a fixed loop over the warps: the result depends only on the
// launch shape, which depends only on the row length, so every run gives the same bits.
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "core/cuda/cuda_check.h"
#include "core/error.h"
#include "core/kernels/cuda/cuda_dtype.h"
#include "core/tensor.h"

namespace strata::cuda::rows {

// Device pointer of a tensor (null for an undefined one). The CUDA side never calls
// Tensor::data<T>(), which is for CPU memory.
template <class T>
T* ptr(const Tensor& t) {
  return t.defined() ? static_cast<T*>(t.raw_data()) : nullptr;
}

inline int64_t rows_of(const Tensor& t) {
  return t.dim() ? t.numel() / t.size(-1) : 1;
}
inline int64_t cols_of(const Tensor& t) {
  return t.dim() ? t.size(-1) : 1;
}

template <class A>
__device__ inline A load(const A& v) {
  return v;
}
__device__ inline float load(const __nv_bfloat16& v) {
  return __bfloat162float(v);
}

// exp and log in the accumulation type (float or double), IEEE-accurate (no fast math).
__host__ __device__ inline float exp_acc(float x) {
  return expf(x);
}
__host__ __device__ inline double exp_acc(double x) {
  return exp(x);
}
__host__ __device__ inline float log_acc(float x) {
  return logf(x);
}
__host__ __device__ inline double log_acc(double x) {
  return log(x);
}

template <class A>
__host__ __device__ inline A infinity() {
  return std::numeric_limits<A>::infinity();
}

// Running max and sum of exp(x - max) ("online softmax"). A term whose max equals the combined
// max is taken as is, so -inf entries add nothing once a finite one is seen and never form
// -inf - -inf; rows that end with a max of +-inf are turned into NaN by the callers, as on the CPU.
template <class A>
struct MaxSum {
  A m, s;
};

template <class A>
__host__ __device__ inline MaxSum<A> combine(MaxSum<A> a, MaxSum<A> b) {
  const A M = fmax(a.m, b.m);
  const A sa = a.m == M ? a.s : a.s * exp_acc(a.m - M);
  const A sb = b.m == M ? b.s : b.s * exp_acc(b.m - M);
  return {M, sa + sb};
}

// Adds one element x (a term of sum 1 at max x).
template <class A>
__host__ __device__ inline MaxSum<A> push(MaxSum<A> a, A x) {
  return combine(a, MaxSum<A>{x, A(1)});
}

template <class A>
struct Sum2 {
  A a, b;
};

struct SumOp {
  template <class A>
  __device__ A operator()(A x, A y) const {
    return x + y;
  }
  template <class A>
  __device__ Sum2<A> operator()(Sum2<A> x, Sum2<A> y) const {
    return {x.a + y.a, x.b + y.b};
  }
};
struct MaxSumOp {
  template <class A>
  __device__ MaxSum<A> operator()(MaxSum<A> x, MaxSum<A> y) const {
    return combine(x, y);
  }
};

__device__ inline float shfl_xor(float v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}
__device__ inline double shfl_xor(double v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}
template <class A>
__device__ inline MaxSum<A> shfl_xor(MaxSum<A> v, int lane_mask) {
  return {shfl_xor(v.m, lane_mask), shfl_xor(v.s, lane_mask)};
}
template <class A>
__device__ inline Sum2<A> shfl_xor(Sum2<A> v, int lane_mask) {
  return {shfl_xor(v.a, lane_mask), shfl_xor(v.b, lane_mask)};
}

// Butterfly: partners compute op(x, y) and op(y, x), which are the same bits for the commutative
// ops above, so every lane ends with the identical result.
template <class V, class Op>
__device__ inline V warp_allreduce(V v, Op op) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = op(v, shfl_xor(v, o));
  return v;
}

// All threads of the block must call it. `smem` holds one V per warp (32 entries).
template <class V, class Op>
__device__ inline V block_allreduce(V v, Op op, V* smem) {
  v = warp_allreduce(v, op);
  const int warp = int(threadIdx.x) / 32, lane = int(threadIdx.x) % 32;
  const int warps = int(blockDim.x) / 32;
  __syncthreads();  // the previous reduction's readers are done with smem
  if (lane == 0) smem[warp] = v;
  __syncthreads();
  V r = smem[0];
  for (int w = 1; w < warps; ++w) r = op(r, smem[w]);
  return r;
}

// Threads per block when a warp owns a row (each block then serves kWarpRowsPerBlock rows).
inline constexpr int kWarpBlock = 256;
inline constexpr int kWarpRowsPerBlock = kWarpBlock / 32;

// kThreads == 32: the row is one warp's; otherwise the whole block (kThreads threads) owns it.
template <int kThreads>
struct RowOwner {
  static constexpr bool kWarp = kThreads == 32;
  static constexpr int kBlock = kWarp ? kWarpBlock : kThreads;

  __device__ static int64_t row() {
    return kWarp ? int64_t(blockIdx.x) * kWarpRowsPerBlock + threadIdx.x / 32 : int64_t(blockIdx.x);
  }
  __device__ static int rank() { return kWarp ? int(threadIdx.x) % 32 : int(threadIdx.x); }

  template <class V, class Op>
  __device__ static V allreduce(V v, Op op, V* smem) {
    if constexpr (kWarp)
      return warp_allreduce(v, op);
    else
      return block_allreduce(v, op, smem);
  }

  static unsigned grid(int64_t rows) {
    const int64_t g = kWarp ? (rows + kWarpRowsPerBlock - 1) / kWarpRowsPerBlock : rows;
    STRATA_CHECK(g <= int64_t(INT32_MAX), "CUDA row kernel: ", rows, " rows exceed the grid limit");
    return unsigned(g);
  }
};

// Calls fn.template operator()<kThreads>() with the row owner suited to rows of n elements:
// a warp up to 1024 elements (32 per lane), a block above, wider for longer rows so that each
// thread keeps a few dozen elements.
template <class Fn>
void with_row_owner(int64_t n, Fn&& fn) {
  if (n <= 1024)
    fn.template operator()<32>();
  else if (n <= 8192)
    fn.template operator()<256>();
  else
    fn.template operator()<1024>();
}

inline unsigned ceil_div(int64_t a, int64_t b) {
  return unsigned((a + b - 1) / b);
}

}  // namespace strata::cuda::rows
