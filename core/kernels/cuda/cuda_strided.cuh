#pragma once
// Strided element access for CUDA kernels: N operands that share a logical shape but have their
// own element strides (0 for broadcast inputs), merged like the CPU's strided_loop.h so that a
// contiguous or simply-strided operand costs one multiply per element. The indexer travels to
// the kernel by value (at most 8 merged dims); index math is 64-bit, with a 32-bit divide path
// when the element count allows it. Also: loads and stores that compute in acc_t and round to bf16
// exactly as the CPU's strata::bf16 does, and the launch of an element-wise functor.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <span>

#include "core/cuda/cuda_check.h"
#include "core/error.h"
#include "core/kernels/cuda/cuda_dtype.h"
#include "core/shape.h"
#include "core/tensor.h"

namespace strata::cuda {

inline constexpr int kMaxStridedDims = 8;

template <int N>
struct StridedIndexer {
  int ndim = 1;       // merged dims, >= 1; the last is the innermost
  bool small = true;  // numel < 2^32: divide in 32 bits
  int64_t numel = 1;
  int64_t sizes[kMaxStridedDims] = {};
  int64_t strides[N][kMaxStridedDims] = {};  // elements, per operand

  // Element offset of linear index i (row-major over `sizes`) in every operand.
  __host__ __device__ void offsets(int64_t i, int64_t (&off)[N]) const {
#pragma unroll
    for (int k = 0; k < N; ++k) off[k] = 0;
    if (small) {
      uint32_t rem = uint32_t(i);
      for (int d = ndim - 1; d > 0; --d) {
        const uint32_t s = uint32_t(sizes[d]);
        const uint32_t q = rem / s;
        const int64_t c = int64_t(rem - q * s);
#pragma unroll
        for (int k = 0; k < N; ++k) off[k] += c * strides[k][d];
        rem = q;
      }
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += int64_t(rem) * strides[k][0];
    } else {
      int64_t rem = i;
      for (int d = ndim - 1; d > 0; --d) {
        const int64_t q = rem / sizes[d];
        const int64_t c = rem - q * sizes[d];
#pragma unroll
        for (int k = 0; k < N; ++k) off[k] += c * strides[k][d];
        rem = q;
      }
#pragma unroll
      for (int k = 0; k < N; ++k) off[k] += rem * strides[k][0];
    }
  }

  // Every operand walks memory in logical order with unit stride.
  bool contiguous() const {
    if (ndim != 1) return false;
    for (int k = 0; k < N; ++k)
      if (sizes[0] > 1 && strides[k][0] != 1) return false;
    return true;
  }
};

// Builds the indexer of `sizes` with each operand's element strides: size-1 dims are dropped and
// neighbouring dims that every operand steps through as one run are merged.
template <int N>
StridedIndexer<N> make_indexer(std::span<const int64_t> sizes,
                               const std::array<std::span<const int64_t>, N>& strides) {
  StridedIndexer<N> ix;
  int64_t keep_sizes[64];
  int64_t keep_strides[N][64];
  int nd = 0;
  ix.numel = 1;
  for (size_t d = 0; d < sizes.size(); ++d) {
    ix.numel *= sizes[d];
    if (sizes[d] == 1) continue;
    STRATA_CHECK(nd < 64, "CUDA kernel: rank ", sizes.size(), " is too large");
    keep_sizes[nd] = sizes[d];
    for (int k = 0; k < N; ++k) keep_strides[k][nd] = strides[k][d];
    ++nd;
  }
  int w = 0;
  for (int i = 0; i < nd; ++i) {
    if (w > 0) {
      bool mergeable = true;
      for (int k = 0; k < N; ++k)
        mergeable &= keep_strides[k][w - 1] == keep_strides[k][i] * keep_sizes[i];
      if (mergeable) {
        keep_sizes[w - 1] *= keep_sizes[i];
        for (int k = 0; k < N; ++k) keep_strides[k][w - 1] = keep_strides[k][i];
        continue;
      }
    }
    keep_sizes[w] = keep_sizes[i];
    for (int k = 0; k < N; ++k) keep_strides[k][w] = keep_strides[k][i];
    ++w;
  }
  STRATA_CHECK(w <= kMaxStridedDims, "CUDA element-wise kernel: the operands' layouts need ", w,
               " separate dims after merging, more than the supported ", kMaxStridedDims,
               "; make an operand contiguous first");
  if (w == 0) {  // a scalar, or a tensor of size-1 dims
    ix.ndim = 1;
    ix.sizes[0] = 1;
    for (int k = 0; k < N; ++k) ix.strides[k][0] = 0;
  } else {
    ix.ndim = w;
    for (int d = 0; d < w; ++d) {
      ix.sizes[d] = keep_sizes[d];
      for (int k = 0; k < N; ++k) ix.strides[k][d] = keep_strides[k][d];
    }
  }
  ix.small = ix.numel < (int64_t(1) << 32);
  return ix;
}

// The indexer of N tensors over `shape` (each already broadcast to it).
template <int N>
StridedIndexer<N> make_indexer(const Shape& shape, const std::array<const Tensor*, N>& ts) {
  std::array<std::span<const int64_t>, N> st;
  for (int k = 0; k < N; ++k) {
    STRATA_CHECK(ts[k]->shape() == shape, "CUDA kernel: operand ", k, " has shape ",
                 shape_str(ts[k]->shape()), ", expected ", shape_str(shape));
    st[k] = std::span<const int64_t>(ts[k]->strides());
  }
  return make_indexer<N>(std::span<const int64_t>(shape), st);
}

// --- loads and stores -------------------------------------------------------------------------

template <class T>
__device__ __forceinline__ acc_t<T> load_acc(const T* p) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __uint_as_float(uint32_t(__bfloat16_as_ushort(*p)) << 16);
  else
    return acc_t<T>(*p);
}

// f32 -> bf16 with round-to-nearest-even and a quiet NaN that keeps the payload's top bits, the
// rounding of strata::bf16, so CUDA and CPU results agree bit for bit.
__device__ __forceinline__ __nv_bfloat16 bf16_from_float(float f) {
  uint32_t u = __float_as_uint(f);
  if ((u & 0x7fffffffu) > 0x7f800000u)
    return __ushort_as_bfloat16((unsigned short)((u >> 16) | 0x40));
  u += 0x7fffu + ((u >> 16) & 1u);
  return __ushort_as_bfloat16((unsigned short)(u >> 16));
}

__device__ __forceinline__ float bf16_to_float(__nv_bfloat16 h) {
  return __uint_as_float(uint32_t(__bfloat16_as_ushort(h)) << 16);
}

// The CPU's dtype conversion (cpu_memory.cpp): to bool is "!= 0", to bf16 goes through f32, from
// bf16 goes through f32, everything else is a C++ cast.
template <class To, class From>
__device__ __forceinline__ To cast_like_cpu(From v) {
  if constexpr (std::is_same_v<To, From>) {
    return v;
  } else if constexpr (std::is_same_v<From, __nv_bfloat16>) {
    const float f = bf16_to_float(v);
    if constexpr (std::is_same_v<To, bool>)
      return f != 0.0f;
    else
      return To(f);
  } else if constexpr (std::is_same_v<To, __nv_bfloat16>) {
    return bf16_from_float(float(v));
  } else if constexpr (std::is_same_v<To, bool>) {
    return v != From(0);
  } else {
    return To(v);
  }
}

// Stores an acc_t value into storage type T.
template <class T, class A>
__device__ __forceinline__ void store_acc(T* p, A v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    *p = bf16_from_float(float(v));
  else
    *p = T(v);
}

// --- launching ----------------------------------------------------------------------------------

inline constexpr int kThreads = 256;
inline constexpr int kUnroll = 4;  // elements per thread per grid-stride step

inline unsigned grid_blocks(int64_t work, int64_t per_block, int64_t cap = 1 << 16) {
  return unsigned(std::max<int64_t>(1, std::min(cap, (work + per_block - 1) / per_block)));
}

// Contiguous operands: block b covers a tile of kThreads * kUnroll elements, thread t touches
// t, t + kThreads, ... of it, so every load instruction of a warp is coalesced and four are in
// flight per thread.
template <int N, class F>
__global__ void __launch_bounds__(kThreads) elementwise_contiguous_kernel(int64_t n, F f) {
  const int64_t tile = int64_t(kThreads) * kUnroll;
  for (int64_t base = int64_t(blockIdx.x) * tile; base < n; base += int64_t(gridDim.x) * tile) {
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) {
      const int64_t i = base + threadIdx.x + j * kThreads;
      if (i < n) {
        int64_t off[N];
#pragma unroll
        for (int k = 0; k < N; ++k) off[k] = i;
        f(off);
      }
    }
  }
}

template <int N, class F>
__global__ void __launch_bounds__(kThreads) elementwise_strided_kernel(StridedIndexer<N> ix, F f) {
  const int64_t step = int64_t(gridDim.x) * kThreads;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < ix.numel; i += step) {
    int64_t off[N];
    ix.offsets(i, off);
    f(off);
  }
}

// Calls f(off) for every element, off[k] being operand k's element offset. f is a functor with a
// __device__ operator()(const int64_t (&)[N]) holding the operands' pointers.
template <int N, class F>
void launch_elementwise(const StridedIndexer<N>& ix, const F& f, cudaStream_t stream) {
  if (ix.numel == 0) return;
  if (ix.contiguous()) {
    elementwise_contiguous_kernel<N, F>
        <<<grid_blocks(ix.numel, int64_t(kThreads) * kUnroll), kThreads, 0, stream>>>(ix.numel, f);
  } else {
    elementwise_strided_kernel<N, F>
        <<<grid_blocks(ix.numel, kThreads), kThreads, 0, stream>>>(ix, f);
  }
  STRATA_CUDA_CHECK_LAUNCH();
}

// The CUDA device index of a tensor, with a clear error when it is not on a GPU.
inline int cuda_device_of(const Tensor& t, const char* op) {
  STRATA_CHECK(t.device().type == DeviceType::CUDA, op, ": expected a CUDA tensor, got one on ",
               t.device().str());
  return t.device().index;
}

}  // namespace strata::cuda
