// Lion's and Sophia-G's updates on the GPU: the CPU loops of optim/lion.cpp and optim/sophia.cpp
// with every operation an explicitly rounded intrinsic (no FMA contraction), as the CPU code is
// built with -ffp-contract=off, so both give the same bits. Compiled in CUDA builds; not yet run
// on a GPU (none lent to this project so far).
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
__device__ inline float div(float a, float b) {
  return __fdiv_rn(a, b);
}
__device__ inline double div(double a, double b) {
  return __ddiv_rn(a, b);
}

template <class S>
__device__ inline S sgn(S x) {
  return S((x > S(0)) - (x < S(0)));
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
__global__ void lion_kernel(P* __restrict__ p, const G* __restrict__ g, S* __restrict__ m,
                            int64_t n, SignScalars<S> s) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const S gi = load<S>(g[i]);
    S pi = load<S>(p[i]);
    if (s.decays) pi = mul(pi, s.decay);
    const S c = add(mul(m[i], s.b1), mul(s.w1, gi));
    pi = add(pi, mul(s.neg_lr, sgn(c)));
    m[i] = add(mul(m[i], s.b2), mul(s.w2, gi));
    p[i] = store<P>(pi);
  }
}

template <class P, class G, class S>
__global__ void sophia_kernel(P* __restrict__ p, const G* __restrict__ g, S* __restrict__ m,
                              const S* __restrict__ h, int64_t n, SignScalars<S> s) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    S pi = mul(load<S>(p[i]), s.decay);
    const S mi = add(mul(m[i], s.b1), mul(s.w1, load<S>(g[i])));
    m[i] = mi;
    const S ratio = div(mi < S(0) ? -mi : mi, add(mul(s.rho_b, h[i]), s.tiny));
    pi = add(pi, mul(mul(s.neg_lr, sgn(mi)), ratio < S(1) ? ratio : S(1)));
    p[i] = store<P>(pi);
  }
}

template <class G, class S>
__global__ void hessian_kernel(S* __restrict__ h, const G* __restrict__ g, int64_t n, S b2, S w2) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const S gi = load<S>(g[i]);
    h[i] = add(mul(h[i], b2), mul(mul(w2, gi), gi));
  }
}

unsigned blocks_for(int64_t n) {
  return unsigned(std::min<int64_t>((n + kThreads - 1) / kThreads, kMaxBlocks));
}

__nv_bfloat16* dev(bf16* x) {
  return reinterpret_cast<__nv_bfloat16*>(x);
}
const __nv_bfloat16* dev(const bf16* x) {
  return reinterpret_cast<const __nv_bfloat16*>(x);
}

template <class P, class G, class S>
void launch_lion(int device, P* p, const G* g, S* m, int64_t n, const SignScalars<S>& s) {
  if (n <= 0) return;
  strata::cuda::DeviceGuard guard(device);
  lion_kernel<<<blocks_for(n), kThreads, 0, strata::cuda::stream(device)>>>(p, g, m, n, s);
  STRATA_CUDA_CHECK_LAUNCH();
}

template <class P, class G, class S>
void launch_sophia(int device, P* p, const G* g, S* m, const S* h, int64_t n,
                   const SignScalars<S>& s) {
  if (n <= 0) return;
  strata::cuda::DeviceGuard guard(device);
  sophia_kernel<<<blocks_for(n), kThreads, 0, strata::cuda::stream(device)>>>(p, g, m, h, n, s);
  STRATA_CUDA_CHECK_LAUNCH();
}

template <class G, class S>
void launch_hessian(int device, S* h, const G* g, int64_t n, S b2, S w2) {
  if (n <= 0) return;
  strata::cuda::DeviceGuard guard(device);
  hessian_kernel<<<blocks_for(n), kThreads, 0, strata::cuda::stream(device)>>>(h, g, n, b2, w2);
  STRATA_CUDA_CHECK_LAUNCH();
}

}  // namespace

void lion_update(int device, float* p, const float* g, float* m, int64_t n,
                 const SignScalars<float>& s) {
  launch_lion(device, p, g, m, n, s);
}
void lion_update(int device, double* p, const double* g, double* m, int64_t n,
                 const SignScalars<double>& s) {
  launch_lion(device, p, g, m, n, s);
}
void lion_update(int device, bf16* p, const bf16* g, float* m, int64_t n,
                 const SignScalars<float>& s) {
  launch_lion(device, dev(p), dev(g), m, n, s);
}
void lion_update(int device, bf16* p, const float* g, float* m, int64_t n,
                 const SignScalars<float>& s) {
  launch_lion(device, dev(p), g, m, n, s);
}

void sophia_update(int device, float* p, const float* g, float* m, const float* h, int64_t n,
                   const SignScalars<float>& s) {
  launch_sophia(device, p, g, m, h, n, s);
}
void sophia_update(int device, double* p, const double* g, double* m, const double* h, int64_t n,
                   const SignScalars<double>& s) {
  launch_sophia(device, p, g, m, h, n, s);
}
void sophia_update(int device, bf16* p, const bf16* g, float* m, const float* h, int64_t n,
                   const SignScalars<float>& s) {
  launch_sophia(device, dev(p), dev(g), m, h, n, s);
}
void sophia_update(int device, bf16* p, const float* g, float* m, const float* h, int64_t n,
                   const SignScalars<float>& s) {
  launch_sophia(device, dev(p), g, m, h, n, s);
}

void sophia_hessian(int device, float* h, const float* g, int64_t n, float b2, float w2) {
  launch_hessian(device, h, g, n, b2, w2);
}
void sophia_hessian(int device, double* h, const double* g, int64_t n, double b2, double w2) {
  launch_hessian(device, h, g, n, b2, w2);
}
void sophia_hessian(int device, float* h, const bf16* g, int64_t n, float b2, float w2) {
  launch_hessian(device, h, dev(g), n, b2, w2);
}

}  // namespace strata::optim::kernels::cuda
