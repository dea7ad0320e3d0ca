// Reductions (sum, mean, max, min), argmax and cumsum. As on the CPU (cpu_reduce.cpp), sums
// accumulate in f64 for floating types and i64 for integers. Every element has a fixed place in a
// fixed reduction tree (no atomics), so results are the same from run to run.
#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/cuda_dtype.h"
#include "core/kernels/cuda/cuda_strided.cuh"

namespace strata::cuda {

namespace {

// The accumulator of every reduction: f64 for floating types, i64 for integers.
template <class T>
using red_acc_t = std::conditional_t<std::is_integral_v<T>, int64_t, double>;

template <class T>
__device__ __forceinline__ red_acc_t<T> load_red(const T* p) {
  if constexpr (std::is_integral_v<T>)
    return int64_t(*p);
  else
    return double(load_acc(p));
}

// out = T(compute_t(acc)), the CPU's conversion.
template <class T, class A>
__device__ __forceinline__ void store_red(T* p, A v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    *p = bf16_from_float(float(v));
  else
    *p = T(v);
}

template <class A>
__device__ __forceinline__ bool is_nan(A v) {
  if constexpr (std::is_floating_point_v<A>)
    return v != v;
  else
    return false;
}

template <class A>
struct Combine {
  ReduceOp op;
  __device__ __forceinline__ A identity() const {
    if (op == ReduceOp::Max) {
      if constexpr (std::is_floating_point_v<A>)
        return -INFINITY;
      else
        return std::numeric_limits<A>::lowest();
    }
    if (op == ReduceOp::Min) {
      if constexpr (std::is_floating_point_v<A>)
        return INFINITY;
      else
        return std::numeric_limits<A>::max();
    }
    return A(0);
  }
  // Max and min propagate NaN, as the CPU does.
  __device__ __forceinline__ A operator()(A a, A b) const {
    switch (op) {
      case ReduceOp::Max:
        if (is_nan(a) || is_nan(b)) return a + b;
        return a < b ? b : a;
      case ReduceOp::Min:
        if (is_nan(a) || is_nan(b)) return a + b;
        return b < a ? b : a;
      default:
        return a + b;
    }
  }
  __device__ __forceinline__ A finish(A acc, int64_t R) const {
    if (op == ReduceOp::Mean) return A(acc / A(R));
    if ((op == ReduceOp::Max || op == ReduceOp::Min) && R == 0) return A(0);
    return acc;
  }
};

template <class A>
__device__ __forceinline__ A shfl_down(A v, int delta) {
  return __shfl_down_sync(0xffffffffu, v, delta);
}

// Reduces v over the G threads of a group (G = 32: one warp; G = 256: the whole block); the
// result is valid in the group's thread 0. `scratch` holds 8 values.
template <int G, class A>
__device__ __forceinline__ A group_reduce(A v, Combine<A> f, A* scratch) {
#pragma unroll
  for (int d = 16; d > 0; d >>= 1) v = f(v, shfl_down(v, d));
  if constexpr (G > 32) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
      v = lane < G / 32 ? scratch[lane] : f.identity();
#pragma unroll
      for (int d = 4; d > 0; d >>= 1) v = f(v, shfl_down(v, d));
    }
    __syncthreads();
  }
  return v;
}

// One group of G threads per output; thread t of a group takes reduced elements t, t + G, ...
// Used when the reduced elements are adjacent in memory (or there are few outputs).
template <class T, int G>
__global__ void __launch_bounds__(256)
    reduce_rows_kernel(const T* x, T* out, StridedIndexer<1> kept, StridedIndexer<1> red,
                       ReduceOp op) {
  using A = red_acc_t<T>;
  const Combine<A> f{op};
  __shared__ A scratch[8];
  constexpr int kGroups = 256 / G;
  const int group = threadIdx.x / G, lane = threadIdx.x % G;
  const int64_t K = kept.numel, R = red.numel;
  // Every thread of a block runs the same number of iterations, so the block-wide barriers of
  // G = 256 are reached by all.
  for (int64_t k0 = int64_t(blockIdx.x) * kGroups; k0 < K; k0 += int64_t(gridDim.x) * kGroups) {
    const int64_t k = k0 + group;
    A acc = f.identity();
    if (k < K) {
      int64_t ko[1];
      kept.offsets(k, ko);
      const T* base = x + ko[0];
      for (int64_t r = lane; r < R; r += G) {
        int64_t ro[1];
        red.offsets(r, ro);
        acc = f(acc, load_red(base + ro[0]));
      }
    }
    acc = group_reduce<G>(acc, f, scratch);
    if (k < K && lane == 0) store_red(out + k, f.finish(acc, R));
  }
}

// Reduced dims outside the kept ones (bias gradients: [rows, C] -> [C]): a block covers 32
// consecutive outputs with 8 threads each; blockIdx.y picks a slice of the reduced elements. With
// one slice the block writes the outputs; with several, each slice writes its partial to
// `partial[slice * K + k]` and reduce_partials_kernel adds the slices in order.
template <class T>
__global__ void __launch_bounds__(256)
    reduce_columns_kernel(const T* x, T* out, red_acc_t<T>* partial, StridedIndexer<1> kept,
                          StridedIndexer<1> red, ReduceOp op, int64_t slice_len) {
  using A = red_acc_t<T>;
  const Combine<A> f{op};
  __shared__ A tile[8][33];
  const int tx = threadIdx.x & 31, ty = threadIdx.x >> 5;
  const int64_t K = kept.numel, R = red.numel;
  const int64_t k = int64_t(blockIdx.x) * 32 + tx;
  const int64_t r0 = int64_t(blockIdx.y) * slice_len, r1 = std::min(R, r0 + slice_len);
  A acc = f.identity();
  if (k < K) {
    int64_t ko[1];
    kept.offsets(k, ko);
    const T* base = x + ko[0];
    for (int64_t r = r0 + ty; r < r1; r += 8) {
      int64_t ro[1];
      red.offsets(r, ro);
      acc = f(acc, load_red(base + ro[0]));
    }
  }
  tile[ty][tx] = acc;
  __syncthreads();
  if (ty == 0 && k < K) {
#pragma unroll
    for (int j = 1; j < 8; ++j) acc = f(acc, tile[j][tx]);
    if (gridDim.y == 1)
      store_red(out + k, f.finish(acc, R));
    else
      partial[int64_t(blockIdx.y) * K + k] = acc;
  }
}

template <class T>
__global__ void __launch_bounds__(256)
    reduce_partials_kernel(const red_acc_t<T>* partial, T* out, int64_t K, int slices, int64_t R,
                           ReduceOp op) {
  using A = red_acc_t<T>;
  const Combine<A> f{op};
  for (int64_t k = int64_t(blockIdx.x) * 256 + threadIdx.x; k < K; k += int64_t(gridDim.x) * 256) {
    A acc = partial[k];
    for (int s = 1; s < slices; ++s) acc = f(acc, partial[int64_t(s) * K + k]);
    store_red(out + k, f.finish(acc, R));
  }
}

// --- argmax -----------------------------------------------------------------------------------

template <class T>
using argmax_compute_t = std::conditional_t<std::is_same_v<T, bool>, int,
                                            std::conditional_t<std::is_integral_v<T>, T, acc_t<T>>>;

template <class T>
__device__ __forceinline__ argmax_compute_t<T> load_cmp(const T* p) {
  if constexpr (std::is_integral_v<T>)
    return argmax_compute_t<T>(*p);
  else
    return load_acc(p);
}

// The CPU scans in order and moves only on a strictly greater value, so it returns the first
// index of the largest non-NaN value, or 0 when element 0 is NaN. Candidates with index -1 are
// empty; NaN values never become candidates; ties keep the lower index.
template <class C>
__device__ __forceinline__ void argmax_merge(C& v, int64_t& i, C ov, int64_t oi) {
  if (oi < 0) return;
  if (i < 0 || ov > v || (ov == v && oi < i)) {
    v = ov;
    i = oi;
  }
}

template <class T, int G>
__global__ void __launch_bounds__(256)
    argmax_kernel(const T* x, int64_t* out, StridedIndexer<1> kept, int64_t n, int64_t st) {
  using C = argmax_compute_t<T>;
  __shared__ C sv[8];
  __shared__ int64_t si[8];
  constexpr int kGroups = 256 / G;
  const int group = threadIdx.x / G, lane = threadIdx.x % G;
  const int64_t K = kept.numel;
  for (int64_t k0 = int64_t(blockIdx.x) * kGroups; k0 < K; k0 += int64_t(gridDim.x) * kGroups) {
    const int64_t k = k0 + group;
    C bv = C(0);
    int64_t bi = -1;
    const T* base = x;
    if (k < K) {
      int64_t ko[1];
      kept.offsets(k, ko);
      base = x + ko[0];
      for (int64_t j = lane; j < n; j += G) {
        const C v = load_cmp(base + j * st);
        if (!is_nan(v)) argmax_merge(bv, bi, v, j);
      }
    }
#pragma unroll
    for (int d = 16; d > 0; d >>= 1) {
      const C ov = __shfl_down_sync(0xffffffffu, bv, d);
      const int64_t oi = __shfl_down_sync(0xffffffffu, bi, d);
      argmax_merge(bv, bi, ov, oi);
    }
    if constexpr (G > 32) {
      const int wl = threadIdx.x & 31, warp = threadIdx.x >> 5;
      if (wl == 0) {
        sv[warp] = bv;
        si[warp] = bi;
      }
      __syncthreads();
      if (threadIdx.x == 0)
        for (int w = 1; w < G / 32; ++w) argmax_merge(bv, bi, sv[w], si[w]);
      __syncthreads();
    }
    if (k < K && lane == 0) out[k] = (bi < 0 || is_nan(load_cmp(base))) ? 0 : bi;
  }
}

// --- cumsum -----------------------------------------------------------------------------------

// One warp per line along `dim`: 32 elements at a time, an inclusive warp scan plus the carry of
// the elements before. `rows` maps a line number to its start in x (operand 0) and out (1).
template <class T>
__global__ void __launch_bounds__(256)
    cumsum_kernel(const T* x, T* out, StridedIndexer<2> rows, int64_t n, int64_t xs, int64_t os,
                  bool reverse) {
  using A = red_acc_t<T>;
  const int lane = threadIdx.x & 31;
  const int64_t warps = int64_t(gridDim.x) * 8;
  for (int64_t k = int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5); k < rows.numel; k += warps) {
    int64_t off[2];
    rows.offsets(k, off);
    A carry = 0;
    for (int64_t j0 = 0; j0 < n; j0 += 32) {
      const int64_t j = j0 + lane;
      const int64_t i = reverse ? n - 1 - j : j;
      A v = j < n ? load_red(x + off[0] + i * xs) : A(0);
#pragma unroll
      for (int d = 1; d < 32; d <<= 1) {
        const A o = __shfl_up_sync(0xffffffffu, v, d);
        if (lane >= d) v += o;
      }
      v += carry;
      if (j < n) store_red(out + off[1] + i * os, v);
      carry = __shfl_sync(0xffffffffu, v, 31);
    }
  }
}

// Sizes and element strides of the dims of x that are (or are not) in `dims`.
struct Split {
  std::vector<int64_t> sizes, strides;
};

void split_dims(const Tensor& x, std::span<const int64_t> dims, Split& kept, Split& red) {
  for (int64_t d = 0; d < x.dim(); ++d) {
    const bool reduced = std::find(dims.begin(), dims.end(), d) != dims.end();
    Split& s = reduced ? red : kept;
    s.sizes.push_back(x.shape()[d]);
    s.strides.push_back(x.strides()[d]);
  }
}

StridedIndexer<1> indexer_of(const Split& s) {
  return make_indexer<1>(std::span<const int64_t>(s.sizes), {std::span<const int64_t>(s.strides)});
}

int sm_count(int dev) {
  int n = 0;
  STRATA_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
  return n;
}

}  // namespace

void CudaBackend::reduce(ReduceOp op, const Tensor& x, std::span<const int64_t> dims,
                         const Tensor& out) {
  const int dev = cuda_device_of(out, "reduce");
  STRATA_CHECK(x.device() == out.device(), "reduce: input on ", x.device().str(), ", output on ",
               out.device().str());
  STRATA_CHECK(out.is_contiguous(), "reduce: output must be contiguous");
  Split kept, red;
  split_dims(x, dims, kept, red);
  const StridedIndexer<1> ki = indexer_of(kept), ri = indexer_of(red);
  const int64_t K = ki.numel, R = ri.numel;
  STRATA_CHECK(out.numel() == K, "reduce: output has ", out.numel(), " elements, expected ", K);
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  if (K == 0) return;
  // Adjacent outputs adjacent in memory while the reduced elements are not: walk columns.
  const bool reduced_inner = ri.numel > 1 && ri.strides[0][ri.ndim - 1] == 1;
  const bool kept_inner = ki.numel > 1 && ki.strides[0][ki.ndim - 1] == 1;
  const bool columns = kept_inner && !reduced_inner;
  auto run = [&]<class T>() {
    if constexpr (std::is_same_v<T, bool>) {
      STRATA_FAIL("reduce: bool input must be converted first");
    } else {
      using A = red_acc_t<T>;
      const T* xp = static_cast<const T*>(x.raw_data());
      T* op_out = static_cast<T*>(out.raw_data());
      if (columns) {
        const int64_t bx = (K + 31) / 32;
        const int64_t want = 4 * int64_t(sm_count(dev));
        int64_t slices = std::min<int64_t>({(want + bx - 1) / bx, (R + 255) / 256, 1024});
        slices = std::max<int64_t>(1, slices);
        const int64_t slice_len = (R + slices - 1) / std::max<int64_t>(1, slices);
        if (slice_len > 0) slices = (R + slice_len - 1) / slice_len;
        slices = std::max<int64_t>(1, slices);
        STRATA_CHECK(bx < (int64_t(1) << 31), "reduce: ", K, " outputs is too many");
        Tensor partial;
        A* pp = nullptr;
        if (slices > 1) {
          partial = Tensor::empty({slices * K}, std::is_integral_v<A> ? DType::i64 : DType::f64,
                                  out.device());
          pp = static_cast<A*>(partial.raw_data());
        }
        reduce_columns_kernel<T><<<dim3(unsigned(bx), unsigned(slices)), 256, 0, s>>>(
            xp, op_out, pp, ki, ri, op, std::max<int64_t>(1, slice_len));
        STRATA_CUDA_CHECK_LAUNCH();
        if (slices > 1) {
          reduce_partials_kernel<T>
              <<<grid_blocks(K, 256), 256, 0, s>>>(pp, op_out, K, int(slices), R, op);
          STRATA_CUDA_CHECK_LAUNCH();
        }
        // `partial` goes back to the stream-ordered allocator; later work on this stream runs
        // after these kernels.
      } else if (R >= 2048) {
        reduce_rows_kernel<T, 256><<<grid_blocks(K, 1), 256, 0, s>>>(xp, op_out, ki, ri, op);
        STRATA_CUDA_CHECK_LAUNCH();
      } else {
        reduce_rows_kernel<T, 32><<<grid_blocks(K, 8), 256, 0, s>>>(xp, op_out, ki, ri, op);
        STRATA_CUDA_CHECK_LAUNCH();
      }
    }
  };
  STRATA_CUDA_DISPATCH_ALL(x.dtype(), "reduce", run);
}

void CudaBackend::argmax(const Tensor& x, int64_t dim, const Tensor& out) {
  const int dev = cuda_device_of(out, "argmax");
  STRATA_CHECK(x.device() == out.device(), "argmax: input on ", x.device().str(), ", output on ",
               out.device().str());
  STRATA_CHECK(out.dtype() == DType::i64 && out.is_contiguous(),
               "argmax: output must be a contiguous i64 tensor");
  STRATA_CHECK(dim >= 0 && dim < x.dim(), "argmax: dim ", dim, " out of range for rank ", x.dim());
  Split kept, red;
  const int64_t d[1] = {dim};
  split_dims(x, std::span<const int64_t>(d, 1), kept, red);
  const StridedIndexer<1> ki = indexer_of(kept);
  const int64_t n = x.shape()[dim], st = x.strides()[dim];
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  if (ki.numel == 0) return;
  STRATA_CHECK(n > 0, "argmax: dim ", dim, " of ", shape_str(x.shape()), " is empty");
  auto run = [&]<class T>() {
    const T* xp = static_cast<const T*>(x.raw_data());
    int64_t* o = static_cast<int64_t*>(out.raw_data());
    if (n >= 2048) {
      argmax_kernel<T, 256><<<grid_blocks(ki.numel, 1), 256, 0, s>>>(xp, o, ki, n, st);
    } else {
      argmax_kernel<T, 32><<<grid_blocks(ki.numel, 8), 256, 0, s>>>(xp, o, ki, n, st);
    }
    STRATA_CUDA_CHECK_LAUNCH();
  };
  STRATA_CUDA_DISPATCH_ALL(x.dtype(), "argmax", run);
}

void CudaBackend::cumsum(const Tensor& x, int64_t dim, bool reverse, const Tensor& out) {
  const int dev = cuda_device_of(out, "cumsum");
  STRATA_CHECK(x.device() == out.device(), "cumsum: input on ", x.device().str(), ", output on ",
               out.device().str());
  STRATA_CHECK(x.shape() == out.shape() && x.dtype() == out.dtype(), "cumsum: input ",
               shape_str(x.shape()), " ", dtype_name(x.dtype()), " and output ",
               shape_str(out.shape()), " ", dtype_name(out.dtype()), " must match");
  std::vector<int64_t> sizes, xst, ost;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim) {
      sizes.push_back(x.shape()[d]);
      xst.push_back(x.strides()[d]);
      ost.push_back(out.strides()[d]);
    }
  const auto rows = make_indexer<2>(std::span<const int64_t>(sizes),
                                    {std::span<const int64_t>(xst), std::span<const int64_t>(ost)});
  const int64_t n = x.dim() ? x.shape()[dim] : 1;
  const int64_t xs = x.dim() ? x.strides()[dim] : 1, os = x.dim() ? out.strides()[dim] : 1;
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  if (rows.numel == 0 || n == 0) return;
  auto run = [&]<class T>() {
    if constexpr (std::is_same_v<T, bool>) {
      STRATA_FAIL("cumsum: bool input must be converted first");
    } else {
      cumsum_kernel<T><<<grid_blocks(rows.numel, 8), 256, 0, s>>>(
          static_cast<const T*>(x.raw_data()), static_cast<T*>(out.raw_data()), rows, n, xs, os,
          reverse);
      STRATA_CUDA_CHECK_LAUNCH();
    }
  };
  STRATA_CUDA_DISPATCH_ALL(x.dtype(), "cumsum", run);
}

}  // namespace strata::cuda
