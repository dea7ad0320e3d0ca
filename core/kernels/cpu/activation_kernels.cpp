#include "core/kernels/cpu/activation_kernels.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/kernels/cpu/simd_avx2.h"
#include "core/kernels/cpu/vec_math.h"

namespace strata::cpu {
namespace {

template <class T>
constexpr bool kVec = !std::is_same_v<T, double>;

using kernels::kGeluCubic;
using kernels::kInvSqrt2;
using kernels::kInvSqrt2Pi;
using kernels::kSqrt2OverPi;

// Each op gives the activation value v and its derivative d, as scalars in A (unary_math.h's
// formulas) and on 8 f32 lanes (the same formulas in AVX2).
template <Act kAct>
struct ScalarVg {
  template <class A>
  static void vg(A x, A& v, A& d) {
    kernels::act_vg<scalar::Math>(kAct, x, v, d);
  }
};

struct GeluExactOp : ScalarVg<Act::GeluExact> {
  STRATA_AVX2 static void vg8(__m256 x, __m256& v, __m256& d) {
    using namespace avx2;
    const __m256 cdf =
        _mm256_mul_ps(splat(0.5f), erfc8(_mm256_mul_ps(x, splat(-float(kInvSqrt2)))));
    v = _mm256_mul_ps(x, cdf);
    const __m256 pdf = exp8(_mm256_mul_ps(splat(-0.5f), _mm256_mul_ps(x, x)));
    d = _mm256_fmadd_ps(_mm256_mul_ps(x, splat(float(kInvSqrt2Pi))), pdf, cdf);
  }
};

struct GeluTanhOp : ScalarVg<Act::GeluTanh> {
  STRATA_AVX2 static void vg8(__m256 x, __m256& v, __m256& d) {
    using namespace avx2;
    const __m256 x2 = _mm256_mul_ps(x, x);
    const __m256 k = splat(float(kSqrt2OverPi));
    const __m256 u = _mm256_mul_ps(_mm256_mul_ps(k, x),
                                   _mm256_fmadd_ps(splat(float(kGeluCubic)), x2, splat(1.0f)));
    const __m256 e = exp8(_mm256_mul_ps(splat(-2.0f), u));
    const __m256 s = _mm256_div_ps(splat(1.0f), _mm256_add_ps(splat(1.0f), e));
    v = _mm256_mul_ps(x, s);
    const __m256 du2 = _mm256_mul_ps(
        splat(2.0f),
        _mm256_mul_ps(k, _mm256_fmadd_ps(splat(float(3 * kGeluCubic)), x2, splat(1.0f))));
    const __m256 xs1s = _mm256_mul_ps(v, _mm256_sub_ps(splat(1.0f), s));
    d = _mm256_fmadd_ps(xs1s, du2, s);
  }
};

struct SiluOp : ScalarVg<Act::Silu> {
  STRATA_AVX2 static void vg8(__m256 x, __m256& v, __m256& d) {
    using namespace avx2;
    const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
    const __m256 s = _mm256_div_ps(splat(1.0f), _mm256_add_ps(splat(1.0f), e));
    v = _mm256_mul_ps(x, s);
    d = _mm256_mul_ps(s, _mm256_fmadd_ps(x, _mm256_sub_ps(splat(1.0f), s), splat(1.0f)));
  }
};

// What a pass computes from (x, up, dy), per element. Inputs that a mode does not use are null.
enum class Mode { Fwd, Bwd, GatedFwd, GatedBwd };

template <Mode M, class Op, class T>
void block_scalar(const T* x, const T* up, const T* dy, T* out0, T* out1, int64_t lo, int64_t hi) {
  using A = acc_t<T>;
  for (int64_t i = lo; i < hi; ++i) {
    A v, d;
    Op::vg(to_acc(x[i]), v, d);
    if constexpr (M == Mode::Fwd) out0[i] = from_acc<T>(v);
    if constexpr (M == Mode::Bwd) out0[i] = from_acc<T>(to_acc(dy[i]) * d);
    if constexpr (M == Mode::GatedFwd) out0[i] = from_acc<T>(v * to_acc(up[i]));
    if constexpr (M == Mode::GatedBwd) {
      const A g = to_acc(dy[i]);
      if (out0) out0[i] = from_acc<T>(g * to_acc(up[i]) * d);
      if (out1) out1[i] = from_acc<T>(g * v);
    }
  }
}

template <Mode M, class Op, class T>
STRATA_AVX2 void block_avx2(const T* x, const T* up, const T* dy, T* out0, T* out1, int64_t lo,
                            int64_t hi) {
  using namespace avx2;
  const int64_t hv = lo + (hi - lo) / 8 * 8;
  for (int64_t i = lo; i < hv; i += 8) {
    __m256 v, d;
    Op::vg8(load8(x + i), v, d);
    if constexpr (M == Mode::Fwd) store8(out0 + i, v);
    if constexpr (M == Mode::Bwd) store8(out0 + i, _mm256_mul_ps(load8(dy + i), d));
    if constexpr (M == Mode::GatedFwd) store8(out0 + i, _mm256_mul_ps(v, load8(up + i)));
    if constexpr (M == Mode::GatedBwd) {
      const __m256 g = load8(dy + i);
      if (out0) store8(out0 + i, _mm256_mul_ps(_mm256_mul_ps(g, load8(up + i)), d));
      if (out1) store8(out1 + i, _mm256_mul_ps(g, v));
    }
  }
  block_scalar<M, Op>(x, up, dy, out0, out1, hv, hi);
}

// Fixed blocks of a multiple of 8 elements, so only the array's last block has a scalar tail.
template <Mode M, class Op, class T>
void run(const T* x, const T* up, const T* dy, T* out0, T* out1, int64_t n) {
  STRATA_CHECK(n >= 0, "activation kernel: got n=", n, ", expected n >= 0");
  constexpr int64_t kBlock = 4096;
  const int64_t nb = (n + kBlock - 1) / kBlock;
  const bool vec = kVec<T> && cpu_has_avx2_fma();
#pragma omp parallel for schedule(static) if (use_parallel(n))
  for (int64_t b = 0; b < nb; ++b) {
    const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    if constexpr (kVec<T>) {
      if (vec) {
        block_avx2<M, Op>(x, up, dy, out0, out1, lo, hi);
        continue;
      }
    }
    block_scalar<M, Op>(x, up, dy, out0, out1, lo, hi);
  }
}

template <Mode M, class T>
void dispatch(Act act, const T* x, const T* up, const T* dy, T* out0, T* out1, int64_t n) {
  switch (act) {
    case Act::GeluExact:
      return run<M, GeluExactOp>(x, up, dy, out0, out1, n);
    case Act::GeluTanh:
      return run<M, GeluTanhOp>(x, up, dy, out0, out1, n);
    case Act::Silu:
      return run<M, SiluOp>(x, up, dy, out0, out1, n);
  }
  STRATA_FAIL("activation kernel: unknown Act value ", int(act));
}

}  // namespace

template <class T>
void activation_forward(Act act, const T* x, T* y, int64_t n) {
  dispatch<Mode::Fwd, T>(act, x, nullptr, nullptr, y, nullptr, n);
}
template <class T>
void activation_backward(Act act, const T* x, const T* dy, T* dx, int64_t n) {
  dispatch<Mode::Bwd, T>(act, x, nullptr, dy, dx, nullptr, n);
}
template <class T>
void gelu_forward(const T* x, T* y, int64_t n, bool tanh_approx) {
  activation_forward(tanh_approx ? Act::GeluTanh : Act::GeluExact, x, y, n);
}
template <class T>
void gelu_backward(const T* x, const T* dy, T* dx, int64_t n, bool tanh_approx) {
  activation_backward(tanh_approx ? Act::GeluTanh : Act::GeluExact, x, dy, dx, n);
}
template <class T>
void silu_forward(const T* x, T* y, int64_t n) {
  activation_forward(Act::Silu, x, y, n);
}
template <class T>
void silu_backward(const T* x, const T* dy, T* dx, int64_t n) {
  activation_backward(Act::Silu, x, dy, dx, n);
}
template <class T>
void gated_forward(Act act, const T* gate, const T* up, T* y, int64_t n) {
  dispatch<Mode::GatedFwd, T>(act, gate, up, nullptr, y, nullptr, n);
}
template <class T>
void gated_backward(Act act, const T* gate, const T* up, const T* dy, T* dgate, T* dup, int64_t n) {
  dispatch<Mode::GatedBwd, T>(act, gate, up, dy, dgate, dup, n);
}

#define STRATA_INSTANTIATE(T)                                                 \
  template void activation_forward<T>(Act, const T*, T*, int64_t);            \
  template void activation_backward<T>(Act, const T*, const T*, T*, int64_t); \
  template void gelu_forward<T>(const T*, T*, int64_t, bool);                 \
  template void gelu_backward<T>(const T*, const T*, T*, int64_t, bool);      \
  template void silu_forward<T>(const T*, T*, int64_t);                       \
  template void silu_backward<T>(const T*, const T*, T*, int64_t);            \
  template void gated_forward<T>(Act, const T*, const T*, T*, int64_t);       \
  template void gated_backward<T>(Act, const T*, const T*, const T*, T*, T*, int64_t);
STRATA_INSTANTIATE(float)
STRATA_INSTANTIATE(double)
STRATA_INSTANTIATE(bf16)
#undef STRATA_INSTANTIATE

}  // namespace strata::cpu
