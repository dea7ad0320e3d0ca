// copy (with dtype conversion) and fill within one GPU, and the counter-based random fills and
// dropout, which draw exactly the CPU backend's numbers (core/random/philox.h).
#include <cuda_bf16.h>

#include "core/bf16.h"
#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/cuda_dtype.h"
#include "core/kernels/cuda/cuda_strided.cuh"
#include "core/kernels/cuda/philox_device.cuh"

namespace strata::cuda {

namespace {

template <class To, class From>
struct CopyFn {
  To* dst;
  const From* src;
  __device__ void operator()(const int64_t (&off)[2]) const {
    dst[off[0]] = cast_like_cpu<To, From>(src[off[1]]);
  }
};

template <class T>
struct FillFn {
  T* dst;
  T value;
  __device__ void operator()(const int64_t (&off)[1]) const { dst[off[0]] = value; }
};

// The CPU's fill value: bf16 rounds through f32 with strata::bf16's rounding.
template <class T>
T host_fill_value(double value) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat16_raw raw;
    raw.x = strata::bf16(float(value)).bits;
    return __nv_bfloat16(raw);
  } else {
    return T(value);
  }
}

template <class T>
bool all_bytes_zero(const T& v) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(&v);
  for (size_t i = 0; i < sizeof(T); ++i)
    if (p[i]) return false;
  return true;
}

// Which transform a random fill applies to element g's words.
enum class Draw { Uniform, Normal };

// Each thread fills 4 consecutive elements: their words come from one or two Philox blocks (4
// words per block for f32/bf16 uniforms, 2 elements per block for f64 uniforms and normals), and
// a block is computed once per thread rather than once per element.
//
// The affine maps lo + (hi - lo) * u and mean + std * z are written as fma: the CPU backend is
// built with -march=native, where GCC contracts them into one (vfmadd132sd in cpu_memory.cpp.o),
// and the streams must agree bit for bit.
template <class T, Draw D>
__global__ void __launch_bounds__(kThreads)
    random_fill_kernel(T* out, int64_t n, PhiloxDevice rng, uint64_t index_offset, double a,
                       double b) {
  constexpr bool kWide = std::is_same_v<T, double> || D == Draw::Normal;
  const int64_t step = int64_t(gridDim.x) * kThreads * 4;
  for (int64_t i0 = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * 4; i0 < n; i0 += step) {
    uint64_t cached = ~uint64_t(0);
    PhiloxBlock blk{};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = i0 + j;
      if (i >= n) break;
      const uint64_t g = index_offset + uint64_t(i);
      const uint64_t bid = kWide ? g >> 1 : g >> 2;
      if (bid != cached) {
        blk = rng.block(bid);
        cached = bid;
      }
      double v;
      if constexpr (D == Draw::Uniform) {
        double u;
        if constexpr (std::is_same_v<T, double>) {
          const int o = int(g & 1) * 2;
          u = PhiloxDevice::uniform_f64_from(blk.w[o], blk.w[o + 1]);
        } else {
          u = double(PhiloxDevice::uniform_from(blk.w[g & 3]));
        }
        v = __fma_rn(__dsub_rn(b, a), u, a);  // lo + (hi - lo) * u
      } else {
        const int o = int(g & 1) * 2;
        v = __fma_rn(b, PhiloxDevice::normal_from(blk.w[o], blk.w[o + 1]), a);  // mean + std * z
      }
      if constexpr (std::is_same_v<T, double>)
        out[i] = v;
      else
        store_acc<T>(out + i, float(v));
    }
  }
}

// keep(i) = uniform(index_offset + global(i)) >= p, where global(i) maps a local row to its place
// in the whole batch (RandomKey::row_first / row_stride).
template <class T>
__global__ void __launch_bounds__(kThreads)
    dropout_kernel(const T* x, T* y, int64_t n, PhiloxDevice rng, uint64_t index_offset,
                   float threshold, acc_t<T> scale, bool strided, int64_t row_elems,
                   int64_t row_first, int64_t row_stride) {
  using A = acc_t<T>;
  const int64_t step = int64_t(gridDim.x) * kThreads * 4;
  for (int64_t i0 = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * 4; i0 < n; i0 += step) {
    uint64_t cached = ~uint64_t(0);
    PhiloxBlock blk{};
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t i = i0 + j;
      if (i >= n) break;
      uint64_t local = uint64_t(i);
      if (strided) {
        const int64_t row = i / row_elems;
        local = uint64_t((row * row_stride + row_first) * row_elems + (i - row * row_elems));
      }
      const uint64_t g = index_offset + local;
      if ((g >> 2) != cached) {
        blk = rng.block(g >> 2);
        cached = g >> 2;
      }
      const bool keep = PhiloxDevice::uniform_from(blk.w[g & 3]) >= threshold;
      store_acc<T>(y + i, keep ? A(load_acc(x + i) * scale) : A(0));
    }
  }
}

void check_same_gpu(const Tensor& src, const Tensor& dst) {
  STRATA_CHECK(
      src.device().type == DeviceType::CUDA && src.device() == dst.device(),
      "copy: internal error: the CUDA backend copies within one GPU, but the source is on ",
      src.device().str(), " and the destination on ", dst.device().str(),
      "; copies between devices go through cuda::copy_between");
}

}  // namespace

void CudaBackend::copy(const Tensor& src, const Tensor& dst) {
  STRATA_CHECK(src.shape() == dst.shape(), "copy: source ", shape_str(src.shape()),
               " and destination ", shape_str(dst.shape()), " differ");
  check_same_gpu(src, dst);
  const int dev = dst.device().index;
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  if (src.numel() == 0) return;
  if (src.dtype() == dst.dtype() && src.is_contiguous() && dst.is_contiguous()) {
    STRATA_CUDA_CHECK(cudaMemcpyAsync(dst.raw_data(), src.raw_data(),
                                      size_t(src.numel()) * src.element_size(),
                                      cudaMemcpyDeviceToDevice, s));
    return;
  }
  const auto ix = make_indexer<2>(dst.shape(), {&dst, &src});
  auto to = [&]<class To>() {
    auto from = [&]<class From>() {
      launch_elementwise<2>(ix,
                            CopyFn<To, From>{static_cast<To*>(dst.raw_data()),
                                             static_cast<const From*>(src.raw_data())},
                            s);
    };
    STRATA_CUDA_DISPATCH_ALL(src.dtype(), "copy", from);
  };
  STRATA_CUDA_DISPATCH_ALL(dst.dtype(), "copy", to);
}

void CudaBackend::fill(const Tensor& dst, double value) {
  const int dev = cuda_device_of(dst, "fill");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  if (dst.numel() == 0) return;
  auto run = [&]<class T>() {
    const T v = host_fill_value<T>(value);
    if (dst.is_contiguous() && all_bytes_zero(v)) {
      STRATA_CUDA_CHECK(
          cudaMemsetAsync(dst.raw_data(), 0, size_t(dst.numel()) * dst.element_size(), s));
      return;
    }
    const auto ix = make_indexer<1>(dst.shape(), {&dst});
    launch_elementwise<1>(ix, FillFn<T>{static_cast<T*>(dst.raw_data()), v}, s);
  };
  STRATA_CUDA_DISPATCH_ALL(dst.dtype(), "fill", run);
}

void CudaBackend::uniform(const Tensor& dst, RandomKey key, double lo, double hi) {
  const int dev = cuda_device_of(dst, "uniform");
  STRATA_CHECK(dst.is_contiguous(), "random fill: destination must be contiguous");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  const int64_t n = dst.numel();
  const PhiloxDevice rng = PhiloxDevice::make(key.seed, key.stream, key.step);
  auto run = [&]<class T>() {
    if (n == 0) return;
    random_fill_kernel<T, Draw::Uniform><<<grid_blocks(n, int64_t(kThreads) * 4), kThreads, 0, s>>>(
        static_cast<T*>(dst.raw_data()), n, rng, key.index_offset, lo, hi);
    STRATA_CUDA_CHECK_LAUNCH();
  };
  STRATA_CUDA_DISPATCH_FLOAT(dst.dtype(), "uniform", run);
}

void CudaBackend::normal(const Tensor& dst, RandomKey key, double mean, double std) {
  const int dev = cuda_device_of(dst, "normal");
  STRATA_CHECK(dst.is_contiguous(), "random fill: destination must be contiguous");
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  const int64_t n = dst.numel();
  const PhiloxDevice rng = PhiloxDevice::make(key.seed, key.stream, key.step);
  auto run = [&]<class T>() {
    if (n == 0) return;
    random_fill_kernel<T, Draw::Normal><<<grid_blocks(n, int64_t(kThreads) * 4), kThreads, 0, s>>>(
        static_cast<T*>(dst.raw_data()), n, rng, key.index_offset, mean, std);
    STRATA_CUDA_CHECK_LAUNCH();
  };
  STRATA_CUDA_DISPATCH_FLOAT(dst.dtype(), "normal", run);
}

void CudaBackend::dropout(const Tensor& x, double p, RandomKey key, const Tensor& y) {
  const int dev = cuda_device_of(y, "dropout");
  const bool strided = key.row_first != 0 || key.row_stride != 1;
  STRATA_CHECK(!strided || (x.dim() >= 1 && key.row_first >= 0 && key.row_stride >= 1),
               "dropout: a row mapping (first ", key.row_first, ", stride ", key.row_stride,
               ") needs a tensor with a leading row dimension, first >= 0 and stride >= 1");
  STRATA_CHECK(x.shape() == y.shape() && x.dtype() == y.dtype(), "dropout: input ",
               shape_str(x.shape()), " ", dtype_name(x.dtype()), " and output ",
               shape_str(y.shape()), " ", dtype_name(y.dtype()), " must match");
  STRATA_CHECK(x.is_contiguous() && y.is_contiguous(),
               "dropout: input and output must be contiguous (call .contiguous() first)");
  STRATA_CHECK(x.device() == y.device(), "dropout: input on ", x.device().str(), ", output on ",
               y.device().str());
  DeviceGuard guard(dev);
  const cudaStream_t s = stream(dev);
  const int64_t n = x.numel();
  const PhiloxDevice rng = PhiloxDevice::make(key.seed, key.stream, key.step);
  const int64_t row_elems = strided && n > 0 ? n / x.size(0) : 1;
  auto run = [&]<class T>() {
    if (n == 0) return;
    using A = acc_t<T>;
    const A scale = A(1.0 / (1.0 - p));
    dropout_kernel<T><<<grid_blocks(n, int64_t(kThreads) * 4), kThreads, 0, s>>>(
        static_cast<const T*>(x.raw_data()), static_cast<T*>(y.raw_data()), n, rng,
        key.index_offset, float(p), scale, strided, row_elems, key.row_first, key.row_stride);
    STRATA_CUDA_CHECK_LAUNCH();
  };
  STRATA_CUDA_DISPATCH_FLOAT(x.dtype(), "dropout", run);
}

}  // namespace strata::cuda
