// The fused Adam-family update on the GPU. Every operation uses an explicitly rounded intrinsic
// (no FMA contraction beyond the two FMAs of the formula), which reproduces the CPU kernel
// (optim/kernels/adam_kernel.cpp, built with -ffp-contract=off) bit for bit.
#include <cuda_bf16.h>

#include <algorithm>
#include <type_traits>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "optim/kernels/cuda/optim_cuda.h"

namespace strata::optim::kernels::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 16384;  // grid-stride beyond this

__device__ inline float mul(float a, float b) {
  return __fmul_rn(a, b);
}
__device__ inline double mul(double a, double b) {
  return __dmul_rn(a, b);
}
__device__ inline float add(float a, float b) {
  return __fadd_rn(a, b);
}
__device__ inline double add(double a, double b) {
  return __dadd_rn(a, b);
}
__device__ inline float sub(float a, float b) {
  return __fsub_rn(a, b);
}
__device__ inline double sub(double a, double b) {
  return __dsub_rn(a, b);
}
__device__ inline float div(float a, float b) {
  return __fdiv_rn(a, b);
}
__device__ inline double div(double a, double b) {
  return __ddiv_rn(a, b);
}
__device__ inline float sqrt_rn(float a) {
  return __fsqrt_rn(a);
}
__device__ inline double sqrt_rn(double a) {
  return __dsqrt_rn(a);
}
__device__ inline float fma_rn(float a, float b, float c) {
  return __fmaf_rn(a, b, c);
}
__device__ inline double fma_rn(double a, double b, double c) {
  return __fma_rn(a, b, c);
}

template <class S, class T>
__device__ inline S load(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return S(__bfloat162float(x));
  else
    return S(x);
}
template <class T, class S>
__device__ inline T store(S x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __float2bfloat16_rn(float(x));
  else
    return T(x);
}

template <class P, class G, class S>
__global__ void adam_kernel(P* __restrict__ p, const G* __restrict__ g, S* __restrict__ m,
                            S* __restrict__ v, int64_t n, AdamScalars<S> s) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    S pi = load<S>(p[i]);
    const S gi = load<S>(g[i]);
    S mi = m[i], vi = v[i];
    pi = mul(pi, s.pre_decay);
    mi = s.lerp_m ? fma_rn(s.w1, sub(gi, mi), mi) : fma_rn(gi, s.w1, mul(s.b1, mi));
    vi = add(mul(s.b2, vi), mul(mul(s.w2, gi), gi));
    const S denom = add(div(sqrt_rn(vi), s.denom_div), s.eps);
    pi = add(pi, div(mul(s.neg_step, mi), denom));
    if (s.post_decay != S(0)) pi = fma_rn(pi, s.post_decay, pi);
    p[i] = store<P>(pi);
    m[i] = mi;
    v[i] = vi;
  }
}

template <class P, class G, class S>
void launch(int device, P* p, const G* g, S* m, S* v, int64_t n, const AdamScalars<S>& s) {
  if (n <= 0) return;
  strata::cuda::DeviceGuard guard(device);
  const int64_t blocks = std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks);
  adam_kernel<<<unsigned(blocks), kThreads, 0, strata::cuda::stream(device)>>>(p, g, m, v, n, s);
  STRATA_CUDA_CHECK_LAUNCH();
}

__nv_bfloat16* dev(bf16* x) {
  return reinterpret_cast<__nv_bfloat16*>(x);
}
const __nv_bfloat16* dev(const bf16* x) {
  return reinterpret_cast<const __nv_bfloat16*>(x);
}

}  // namespace

void adam_update(int device, float* p, const float* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s) {
  launch(device, p, g, m, v, n, s);
}
void adam_update(int device, double* p, const double* g, double* m, double* v, int64_t n,
                 const AdamScalars<double>& s) {
  launch(device, p, g, m, v, n, s);
}
void adam_update(int device, bf16* p, const bf16* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s) {
  launch(device, dev(p), dev(g), m, v, n, s);
}
void adam_update(int device, bf16* p, const float* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s) {
  launch(device, dev(p), g, m, v, n, s);
}

}  // namespace strata::optim::kernels::cuda
