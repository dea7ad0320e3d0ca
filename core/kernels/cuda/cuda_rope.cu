// Rotary position embedding over the last dim of a contiguous [..., L, D] tensor, as on the CPU
// (cpu_fused.cpp): pairs (i, i + D/2) of the line at position pos_offset + l rotate by
// theta = (pos_offset + l) * base^(-2i/D); `inverse` rotates by -theta (the backward).
#include <algorithm>
#include <type_traits>

#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/row_kernels.cuh"

namespace strata::cuda {

namespace {

using namespace rows;

constexpr int kThreads = 256;

// cos and sin per (position, frequency), computed in f64 and rounded once to the compute type C:
// positions reach 10^5 and f32 angles lose the low bits that tell neighbouring tokens apart.
template <class C>
__global__ void __launch_bounds__(kThreads)
    rope_table_kernel(C* cosv, C* sinv, int64_t L, int64_t D, double base, int64_t pos_offset,
                      bool inverse) {
  const int64_t half = D / 2;
  const int64_t idx = int64_t(blockIdx.x) * kThreads + threadIdx.x;
  if (idx >= L * half) return;
  const int64_t l = idx / half, i = idx % half;
  const double theta = double(pos_offset + l) * pow(base, -2.0 * double(i) / double(D));
  double sn, cs;
  sincos(theta, &sn, &cs);
  cosv[idx] = C(cs);
  sinv[idx] = C(inverse ? -sn : sn);
}

template <class T, class C>
__global__ void __launch_bounds__(kThreads)
    rope_apply_kernel(const T* x, T* y, const C* cosv, const C* sinv, int64_t pairs, int64_t L,
                      int64_t half) {
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t p = int64_t(blockIdx.x) * kThreads + threadIdx.x; p < pairs; p += stride) {
    const int64_t line = p / half, i = p % half;
    const int64_t t = (line % L) * half + i;
    const C c = cosv[t], s = sinv[t];
    const int64_t o = line * 2 * half + i;
    const C x1 = C(load(x[o])), x2 = C(load(x[o + half]));
    y[o] = convert<T>(x1 * c - x2 * s);
    y[o + half] = convert<T>(x2 * c + x1 * s);
  }
}

}  // namespace

void CudaBackend::rope(const Tensor& x, double base, int64_t pos_offset, bool inverse,
                       const Tensor& y) {
  STRATA_CHECK(x.dim() >= 2 && x.size(-1) % 2 == 0, "rope: expected [..., L, D] with even D, got ",
               shape_str(x.shape()));
  const int64_t D = x.size(-1), L = x.size(-2), half = D / 2;
  const int64_t pairs = x.numel() / 2;
  if (pairs == 0) return;
  const Device dev = y.device();
  DeviceGuard guard(dev.index);
  cudaStream_t s = stream(dev.index);
  const auto run = [&]<class T>() {
    using C = acc_t<T>;  // f32 for bf16 and f32, f64 for f64: the CPU's compute_t
    const DType ct = std::is_same_v<C, double> ? DType::f64 : DType::f32;
    Tensor table = Tensor::empty({2, L, half}, ct, dev);
    C* cosv = ptr<C>(table);
    C* sinv = cosv + L * half;
    rope_table_kernel<C><<<ceil_div(L * half, kThreads), kThreads, 0, s>>>(cosv, sinv, L, D, base,
                                                                           pos_offset, inverse);
    STRATA_CUDA_CHECK_LAUNCH();
    // The grid-stride loop keeps any size within the grid limit.
    const unsigned blocks = unsigned(std::min<int64_t>((pairs + kThreads - 1) / kThreads, 1 << 20));
    rope_apply_kernel<T, C>
        <<<blocks, kThreads, 0, s>>>(ptr<const T>(x), ptr<T>(y), cosv, sinv, pairs, L, half);
    STRATA_CUDA_CHECK_LAUNCH();
  };
  STRATA_CUDA_DISPATCH_FLOAT(x.dtype(), "rope", run);
}

}  // namespace strata::cuda
