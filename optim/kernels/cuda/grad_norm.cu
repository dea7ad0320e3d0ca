// Global-norm clipping on the GPU without float atomics or host round trips: per tensor a fixed
// grid of block partials (f64), one fixed-tree pass over all partials, the coefficient computed
// on the device, and a scale that reads it from device memory.
#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "optim/kernels/cuda/optim_cuda.h"

namespace strata::optim::kernels::cuda {
namespace {

constexpr int kThreads = 512;        // sum_squares_parts
constexpr int kFinalThreads = 1024;  // sum_parts
constexpr int kScaleThreads = 256;
constexpr int64_t kMaxScaleBlocks = 16384;

template <class T>
__device__ inline double to_f64(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return double(__bfloat162float(x));
  else
    return double(x);
}

// Sums `acc` over the block in a fixed tree; the result is valid in thread 0.
template <int Threads>
__device__ double block_sum(double acc) {
  __shared__ double shared[Threads];
  shared[threadIdx.x] = acc;
  __syncthreads();
  for (int width = Threads / 2; width > 0; width /= 2) {
    if (int(threadIdx.x) < width)
      shared[threadIdx.x] = __dadd_rn(shared[threadIdx.x], shared[threadIdx.x + width]);
    __syncthreads();
  }
  return shared[0];
}

template <class T>
__global__ void sum_squares_kernel(const T* __restrict__ x, int64_t n, double* __restrict__ parts) {
  const int64_t stride = int64_t(kThreads) * gridDim.x;
  double acc = 0.0;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < n; i += stride) {
    const double e = to_f64(x[i]);
    acc = __dadd_rn(acc, __dmul_rn(e, e));
  }
  const double total = block_sum<kThreads>(acc);
  if (threadIdx.x == 0) parts[blockIdx.x] = total;
}

__global__ void sum_parts_kernel(const double* __restrict__ parts, int64_t count,
                                 double* __restrict__ out) {
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < count; i += kFinalThreads) acc = __dadd_rn(acc, parts[i]);
  const double total = block_sum<kFinalThreads>(acc);
  if (threadIdx.x == 0) out[0] = total;
}

__global__ void clip_coefficient_kernel(const double* sum_sq, double max_norm, double* norm,
                                        double* coef) {
  const double nrm = sqrt(sum_sq[0]);
  double c = 1.0;
  if (max_norm > 0 && isfinite(nrm)) {
    const double q = max_norm / (nrm + 1e-6);
    if (q < 1.0) c = q;
  }
  norm[0] = nrm;
  coef[0] = c;
}

template <class T>
__global__ void scale_kernel(T* __restrict__ x, int64_t n, const double* __restrict__ coef) {
  const double c = coef[0];
  if (c == 1.0) return;
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    if constexpr (std::is_same_v<T, double>)
      x[i] = __dmul_rn(x[i], c);
    else if constexpr (std::is_same_v<T, float>)
      x[i] = __fmul_rn(x[i], float(c));
    else
      x[i] = __float2bfloat16_rn(__fmul_rn(__bfloat162float(x[i]), float(c)));
  }
}

template <class T>
void launch_sum_squares(int device, const T* x, int64_t n, double* parts) {
  strata::cuda::DeviceGuard guard(device);
  sum_squares_kernel<<<unsigned(kSumParts), kThreads, 0, strata::cuda::stream(device)>>>(x, n,
                                                                                         parts);
  STRATA_CUDA_CHECK_LAUNCH();
}

template <class T>
void launch_scale(int device, T* x, int64_t n, const double* coef) {
  if (n <= 0) return;
  strata::cuda::DeviceGuard guard(device);
  const int64_t blocks =
      std::min<int64_t>((n + kScaleThreads - 1) / kScaleThreads, kMaxScaleBlocks);
  scale_kernel<<<unsigned(blocks), kScaleThreads, 0, strata::cuda::stream(device)>>>(x, n, coef);
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void sum_squares_parts(int device, const float* x, int64_t n, double* parts) {
  launch_sum_squares(device, x, n, parts);
}
void sum_squares_parts(int device, const double* x, int64_t n, double* parts) {
  launch_sum_squares(device, x, n, parts);
}
void sum_squares_parts(int device, const bf16* x, int64_t n, double* parts) {
  launch_sum_squares(device, reinterpret_cast<const __nv_bfloat16*>(x), n, parts);
}

void sum_parts(int device, const double* parts, int64_t count, double* out) {
  strata::cuda::DeviceGuard guard(device);
  sum_parts_kernel<<<1, kFinalThreads, 0, strata::cuda::stream(device)>>>(parts, count, out);
  STRATA_CUDA_CHECK_LAUNCH();
}

void clip_coefficient(int device, const double* sum_sq, double max_norm, double* norm,
                      double* coef) {
  strata::cuda::DeviceGuard guard(device);
  clip_coefficient_kernel<<<1, 1, 0, strata::cuda::stream(device)>>>(sum_sq, max_norm, norm, coef);
  STRATA_CUDA_CHECK_LAUNCH();
}

void scale_by(int device, float* x, int64_t n, const double* coef) {
  launch_scale(device, x, n, coef);
}
void scale_by(int device, double* x, int64_t n, const double* coef) {
  launch_scale(device, x, n, coef);
}
void scale_by(int device, bf16* x, int64_t n, const double* coef) {
  launch_scale(device, reinterpret_cast<__nv_bfloat16*>(x), n, coef);
}

}  // namespace strata::optim::kernels::cuda
