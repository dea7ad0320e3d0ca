// index_select / index_add along a dim, gather / scatter_add. Indices are checked on the device
// before any write, and a bad one throws the CPU backend's message (this costs one stream sync).
// The accumulating ops are deterministic and equal the CPU bit for bit: every destination element
// receives its contributions in the CPU's order (increasing position in the index), one thread
// adding them in sequence with the CPU's per-add rounding; no atomics.
//   index_add: few indices -> one thread per (outer, column) walks the index; otherwise the index
//     is sorted stably (CUB radix sort of (row, position)) and one block per distinct row adds
//     that row's sources in position order (the embedding backward).
//   scatter_add: one thread per index "line" along dim walks it in order.
#include <cuda_bf16.h>

#include <cub/device/device_radix_sort.cuh>
#include <vector>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/cuda_dtype.h"
#include "core/kernels/cuda/cuda_strided.cuh"

namespace strata::cuda {

namespace {

// --- bounds -------------------------------------------------------------------------------------

__global__ void check_index_kernel(const int64_t* idx, int64_t n, int64_t size,
                                   unsigned long long* first_bad) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
    if (idx[i] < 0 || idx[i] >= size) atomicMin(first_bad, (unsigned long long)i);
}

void check_index_tensor(const Tensor& index, const Tensor& data, const char* op) {
  STRATA_CHECK(index.dtype() == DType::i64 && index.is_contiguous(), op,
               ": index must be a contiguous i64 tensor");
  STRATA_CHECK(index.device() == data.device(), op, ": index is on ", index.device().str(),
               ", data on ", data.device().str(), "; move the index with .to(device)");
}

// Throws, naming the first out-of-range index, before the op writes anything.
void check_bounds(const Tensor& index, int64_t size, const char* op, cudaStream_t s) {
  const int64_t n = index.numel();
  if (n == 0) return;
  Tensor flag = Tensor::empty({1}, DType::i64, index.device());
  auto* fp = static_cast<unsigned long long*>(flag.raw_data());
  STRATA_CUDA_CHECK(cudaMemsetAsync(fp, 0xff, sizeof(unsigned long long), s));
  const auto* ip = static_cast<const int64_t*>(index.raw_data());
  check_index_kernel<<<grid_blocks(n, 256, 4096), 256, 0, s>>>(ip, n, size, fp);
  STRATA_CUDA_CHECK_LAUNCH();
  unsigned long long bad = 0;
  STRATA_CUDA_CHECK(cudaMemcpyAsync(&bad, fp, sizeof(bad), cudaMemcpyDeviceToHost, s));
  STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
  if (bad == ~0ull) return;
  int64_t value = 0;
  STRATA_CUDA_CHECK(cudaMemcpyAsync(&value, ip + bad, sizeof(value), cudaMemcpyDeviceToHost, s));
  STRATA_CUDA_CHECK(cudaStreamSynchronize(s));
  STRATA_FAIL(op, ": index ", value, " at position ", int64_t(bad),
              " is out of range for a dim of size ", size, " (valid: 0..", size - 1, ")");
}

// --- index_select and gather: pure copies, dispatched on the element size ----------------------

template <class E>
struct IndexSelectFn {
  E* out;
  const E* x;
  const int64_t* idx;
  int64_t m, inner, x_dim_stride;
  // off[0]: out offset (contiguous), off[1]: x offset of every coordinate but `dim`.
  __device__ void operator()(const int64_t (&off)[2]) const {
    const int64_t j = (off[0] / inner) % m;
    out[off[0]] = x[off[1] + idx[j] * x_dim_stride];
  }
};

template <class E>
struct GatherFn {
  E* out;
  const E* x;
  const int64_t* idx;
  int64_t x_dim_stride;
  // off[0]: out and index offset (both contiguous), off[1]: x offset of every coordinate but dim.
  __device__ void operator()(const int64_t (&off)[2]) const {
    out[off[0]] = x[off[1] + idx[off[0]] * x_dim_stride];
  }
};

template <class Fn>
void dispatch_size(size_t element_size, const char* op, Fn&& fn) {
  switch (element_size) {
    case 1:
      return fn.template operator()<uint8_t>();
    case 2:
      return fn.template operator()<uint16_t>();
    case 4:
      return fn.template operator()<uint32_t>();
    case 8:
      return fn.template operator()<uint64_t>();
  }
  STRATA_FAIL(op, ": unsupported element size ", element_size);
}

// Out's shape with x's strides, `dim` given stride 0: the x offset of everything but the index.
StridedIndexer<2> indexer_without_dim(const Tensor& out, const Tensor& x, int64_t dim) {
  std::vector<int64_t> xs(x.strides().begin(), x.strides().end());
  xs[dim] = 0;
  return make_indexer<2>(std::span<const int64_t>(out.shape()),
                         {std::span<const int64_t>(out.strides()), std::span<const int64_t>(xs)});
}

// --- accumulation -------------------------------------------------------------------------------

// dst = T(C(dst) + C(v)), the CPU's per-add rounding (only bf16 rounds).
template <class T>
__device__ __forceinline__ acc_t<T> add_rounded(acc_t<T> acc, acc_t<T> v) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return bf16_to_float(bf16_from_float(acc + v));
  else
    return acc + v;
}

// Few indices: thread (o, c) walks the index in order.
template <class T>
__global__ void __launch_bounds__(256)
    index_add_walk_kernel(T* out, const T* src, const int64_t* idx, int64_t outer, int64_t n,
                          int64_t m, int64_t inner) {
  const int64_t total = outer * inner, step = int64_t(gridDim.x) * 256;
  for (int64_t t = int64_t(blockIdx.x) * 256 + threadIdx.x; t < total; t += step) {
    const int64_t o = t / inner, c = t - o * inner;
    for (int64_t j = 0; j < m; ++j) {
      T* d = out + (o * n + idx[j]) * inner + c;
      store_acc<T>(d, add_rounded<T>(load_acc(d), load_acc(src + (o * m + j) * inner + c)));
    }
  }
}

__global__ void iota_kernel(int64_t* v, int64_t m) {
  const int64_t step = int64_t(gridDim.x) * blockDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < m; i += step) v[i] = i;
}

// Block x = sorted position p; only the first position of each row's run works. It adds the run's
// source rows (in increasing original position, as the sort is stable) into the row, columns over
// threads, (outer, column chunk) over blockIdx.y.
template <class T>
__global__ void index_add_runs_kernel(T* out, const T* src, const uint64_t* keys,
                                      const int64_t* order, int64_t outer, int64_t n, int64_t m,
                                      int64_t inner, int64_t chunks) {
  using A = acc_t<T>;
  const int64_t p = blockIdx.x;
  if (p > 0 && keys[p] == keys[p - 1]) return;
  const uint64_t row = keys[p];
  int64_t end = p + 1;
  while (end < m && keys[end] == row) ++end;
  for (int64_t yc = blockIdx.y; yc < outer * chunks; yc += gridDim.y) {
    const int64_t o = yc / chunks;
    const int64_t c = (yc - o * chunks) * blockDim.x + threadIdx.x;
    if (c >= inner) continue;
    T* d = out + (o * n + int64_t(row)) * inner + c;
    const T* s = src + o * m * inner + c;
    A acc = load_acc(d);
    int64_t q = p;
    // Four loads in flight, added in order.
    for (; q + 4 <= end; q += 4) {
      A v[4];
#pragma unroll
      for (int u = 0; u < 4; ++u) v[u] = load_acc(s + order[q + u] * inner);
#pragma unroll
      for (int u = 0; u < 4; ++u) acc = add_rounded<T>(acc, v[u]);
    }
    for (; q < end; ++q) acc = add_rounded<T>(acc, load_acc(s + order[q] * inner));
    store_acc<T>(d, acc);
  }
}

// scatter_add: line q (every index coordinate but dim) walks dim in order. `lines` maps q to
// the out offset of its non-dim coordinates.
template <class T>
__global__ void __launch_bounds__(256)
    scatter_add_kernel(T* out, const T* src, const int64_t* idx, StridedIndexer<1> lines, int64_t M,
                       int64_t inner, int64_t out_dim_stride) {
  const int64_t step = int64_t(gridDim.x) * 256;
  for (int64_t q = int64_t(blockIdx.x) * 256 + threadIdx.x; q < lines.numel; q += step) {
    int64_t off[1];
    lines.offsets(q, off);
    const int64_t o = q / inner, c = q - o * inner;
    for (int64_t j = 0; j < M; ++j) {
      const int64_t i = (o * M + j) * inner + c;
      T* d = out + off[0] + idx[i] * out_dim_stride;
      store_acc<T>(d, add_rounded<T>(load_acc(d), load_acc(src + i)));
    }
  }
}

struct Around {
  int64_t outer = 1, inner = 1;
};
Around around(const Shape& s, int64_t dim) {
  Around a;
  for (int64_t d = 0; d < dim; ++d) a.outer *= s[d];
  for (int64_t d = dim + 1; d < int64_t(s.size()); ++d) a.inner *= s[d];
  return a;
}

constexpr int64_t kWalkMaxIndices = 16;

}  // namespace

void CudaBackend::index_select(const Tensor& x, int64_t dim, const Tensor& index,
                               const Tensor& out) {
  const int dev = cuda_device_of(out, "index_select");
  check_index_tensor(index, x, "index_select");
  STRATA_CHECK(x.device() == out.device() && x.dtype() == out.dtype() && out.is_contiguous(),
               "index_select: output must be contiguous, of the input's dtype and device");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  check_bounds(index, x.shape()[dim], "index_select", s);
  const int64_t m = index.numel();
  const Around a = around(out.shape(), dim);
  if (out.numel() == 0) return;
  const auto ix = indexer_without_dim(out, x, dim);
  const auto* ip = static_cast<const int64_t*>(index.raw_data());
  dispatch_size(x.element_size(), "index_select", [&]<class E>() {
    launch_elementwise<2>(
        ix,
        IndexSelectFn<E>{static_cast<E*>(out.raw_data()), static_cast<const E*>(x.raw_data()), ip,
                         m, a.inner, x.strides()[dim]},
        s);
  });
}

void CudaBackend::gather(const Tensor& x, int64_t dim, const Tensor& index, const Tensor& out) {
  const int dev = cuda_device_of(out, "gather");
  check_index_tensor(index, x, "gather");
  STRATA_CHECK(x.device() == out.device() && x.dtype() == out.dtype() && out.is_contiguous() &&
                   out.shape() == index.shape(),
               "gather: output must be contiguous, shaped like the index, of the input's dtype");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  check_bounds(index, x.shape()[dim], "gather", s);
  if (out.numel() == 0) return;
  const auto ix = indexer_without_dim(out, x, dim);
  const auto* ip = static_cast<const int64_t*>(index.raw_data());
  dispatch_size(x.element_size(), "gather", [&]<class E>() {
    launch_elementwise<2>(ix,
                          GatherFn<E>{static_cast<E*>(out.raw_data()),
                                      static_cast<const E*>(x.raw_data()), ip, x.strides()[dim]},
                          s);
  });
}

void CudaBackend::index_add(const Tensor& out, int64_t dim, const Tensor& index,
                            const Tensor& src_in) {
  const int dev = cuda_device_of(out, "index_add");
  check_index_tensor(index, out, "index_add");
  STRATA_CHECK(out.is_contiguous(), "index_add: destination must be contiguous");
  STRATA_CHECK(src_in.device() == out.device() && src_in.dtype() == out.dtype(),
               "index_add: source must have the destination's dtype and device");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  check_bounds(index, out.shape()[dim], "index_add", s);
  const Tensor src = src_in.contiguous();
  const Around a = around(out.shape(), dim);
  const int64_t n = out.shape()[dim], m = index.numel();
  if (m == 0 || a.outer == 0 || a.inner == 0) return;
  const auto* ip = static_cast<const int64_t*>(index.raw_data());
  auto run = [&]<class T>() {
    T* op = static_cast<T*>(out.raw_data());
    const T* sp = static_cast<const T*>(src.raw_data());
    if (m <= kWalkMaxIndices) {
      index_add_walk_kernel<T>
          <<<grid_blocks(a.outer * a.inner, 256), 256, 0, s>>>(op, sp, ip, a.outer, n, m, a.inner);
      STRATA_CUDA_CHECK_LAUNCH();
      return;
    }
    STRATA_CHECK(m < (int64_t(1) << 31), "index_add: ", m, " indices is too many");
    // Stable sort of (row, position): rows fit in end_bit bits (indices are checked >= 0).
    int end_bit = 1;
    while (end_bit < 63 && (uint64_t(1) << end_bit) < uint64_t(n)) ++end_bit;
    Tensor keys = Tensor::empty({m}, DType::i64, out.device());
    Tensor pos = Tensor::empty({m}, DType::i64, out.device());
    Tensor order = Tensor::empty({m}, DType::i64, out.device());
    iota_kernel<<<grid_blocks(m, 256, 4096), 256, 0, s>>>(static_cast<int64_t*>(pos.raw_data()), m);
    STRATA_CUDA_CHECK_LAUNCH();
    const auto* kin = static_cast<const uint64_t*>(index.raw_data());
    auto* kout = static_cast<uint64_t*>(keys.raw_data());
    const auto* vin = static_cast<const int64_t*>(pos.raw_data());
    auto* vout = static_cast<int64_t*>(order.raw_data());
    size_t temp_bytes = 0;
    STRATA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, kin, kout, vin, vout, m,
                                                      0, end_bit, s));
    Tensor temp =
        Tensor::empty({int64_t(std::max<size_t>(temp_bytes, 1))}, DType::b8, out.device());
    STRATA_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.raw_data(), temp_bytes, kin, kout, vin,
                                                      vout, m, 0, end_bit, s));
    const int threads = int(std::min<int64_t>(256, (a.inner + 31) / 32 * 32));
    const int64_t chunks = (a.inner + threads - 1) / threads;
    const unsigned gy = unsigned(std::min<int64_t>(a.outer * chunks, 65535));
    index_add_runs_kernel<T><<<dim3(unsigned(m), gy), threads, 0, s>>>(op, sp, kout, vout, a.outer,
                                                                       n, m, a.inner, chunks);
    STRATA_CUDA_CHECK_LAUNCH();
    // The temporaries return to the stream-ordered allocator; later work on `s` runs after.
  };
  STRATA_CUDA_DISPATCH_FLOAT(out.dtype(), "index_add", run);
}

void CudaBackend::scatter_add(const Tensor& out, int64_t dim, const Tensor& index,
                              const Tensor& src_in) {
  const int dev = cuda_device_of(out, "scatter_add");
  check_index_tensor(index, out, "scatter_add");
  STRATA_CHECK(out.is_contiguous(), "scatter_add: destination must be contiguous");
  STRATA_CHECK(src_in.device() == out.device() && src_in.dtype() == out.dtype() &&
                   src_in.shape() == index.shape(),
               "scatter_add: source must be shaped like the index, with the destination's dtype");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  check_bounds(index, out.shape()[dim], "scatter_add", s);
  const Tensor src = src_in.contiguous();
  if (index.numel() == 0) return;
  const Shape& is = index.shape();
  std::vector<int64_t> sizes, strides;
  for (int64_t d = 0; d < int64_t(is.size()); ++d)
    if (d != dim) {
      sizes.push_back(is[d]);
      strides.push_back(out.strides()[d]);
    }
  const auto lines =
      make_indexer<1>(std::span<const int64_t>(sizes), {std::span<const int64_t>(strides)});
  const Around a = around(is, dim);
  const int64_t M = is[dim];
  const auto* ip = static_cast<const int64_t*>(index.raw_data());
  auto run = [&]<class T>() {
    scatter_add_kernel<T><<<grid_blocks(lines.numel, 256), 256, 0, s>>>(
        static_cast<T*>(out.raw_data()), static_cast<const T*>(src.raw_data()), ip, lines, M,
        a.inner, out.strides()[dim]);
    STRATA_CUDA_CHECK_LAUNCH();
  };
  STRATA_CUDA_DISPATCH_FLOAT(out.dtype(), "scatter_add", run);
}

}  // namespace strata::cuda
