#pragma once
// Transcendental functions on 8 f32 lanes (AVX2+FMA) with scalar counterparts. Measured accuracy
// against f64 std:: (tests/core/row_kernels_test.cpp): exp, log, tanh, erf within 2 ulp over the
// whole f32 range; erfc within 8 ulp (it serves exact GELU's tail, where 1 + erf would cancel).
// Special values follow C: exp overflows to inf, underflows through subnormals to 0, exp(-inf) = 0;
// log(0) = -inf, log(x < 0) = NaN, log(inf) = inf; NaN propagates everywhere.
//
// The polynomials are our own: Taylor series where they converge fast enough (exp, log's atanh
// series), otherwise near-minimax fits (Lawson-reweighted least squares on Chebyshev nodes) of
// tanh, erf and the scaled erfc x*exp(x^2)*erfc(x), fitted once offline in f64.
#include <cmath>

#include "core/kernels/cpu/simd_avx2.h"

namespace strata::cpu {

// Scalar fallbacks: the C library is accurate, and these paths only run on tails and old CPUs.
namespace scalar {
template <class A>
inline A exp(A x) {
  return std::exp(x);
}
template <class A>
inline A log(A x) {
  return std::log(x);
}
template <class A>
inline A tanh(A x) {
  return std::tanh(x);
}
template <class A>
inline A erf(A x) {
  return std::erf(x);
}
template <class A>
inline A erfc(A x) {
  return std::erfc(x);
}

// The math primitives core/kernels/unary_math.h's formulas take (its M), on the host.
struct Math {
  template <class A>
  static A exp(A x) {
    return scalar::exp(x);
  }
  template <class A>
  static A log(A x) {
    return scalar::log(x);
  }
  template <class A>
  static A log1p(A x) {
    return std::log1p(x);
  }
  template <class A>
  static A sqrt(A x) {
    return std::sqrt(x);
  }
  template <class A>
  static A tanh(A x) {
    return scalar::tanh(x);
  }
  template <class A>
  static A erfc(A x) {
    return scalar::erfc(x);
  }
  template <class A>
  static A pow(A x, A y) {
    return std::pow(x, y);
  }
  template <class A>
  static A sin(A x) {
    return std::sin(x);
  }
  template <class A>
  static A cos(A x) {
    return std::cos(x);
  }
  template <class A>
  static A abs(A x) {
    return std::abs(x);
  }
};
}  // namespace scalar

namespace avx2 {

STRATA_AVX2 inline __m256 splat(float v) {
  return _mm256_set1_ps(v);
}

STRATA_AVX2 inline __m256 is_nan(__m256 x) {
  return _mm256_cmp_ps(x, x, _CMP_UNORD_Q);
}

STRATA_AVX2 inline __m256 abs8(__m256 x) {
  return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
}

// Magnitude of `mag` with the sign of `sgn`.
STRATA_AVX2 inline __m256 copysign8(__m256 mag, __m256 sgn) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  return _mm256_or_ps(_mm256_andnot_ps(sign, mag), _mm256_and_ps(sign, sgn));
}

// exp(x) = 2^n * exp(r), |r| <= ln2/2, where the degree-7 Taylor series is already below 1e-8
// relative. 2^n is applied as two factors so that subnormal results round only once.
STRATA_AVX2 inline __m256 exp8(__m256 x) {
  // max/min return their second operand when one is NaN, so x goes second to keep its NaN.
  const __m256 xc = _mm256_min_ps(splat(89.0f), _mm256_max_ps(splat(-104.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, splat(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // ln2 split so that n * ln2_hi is exact for |n| <= 2^9.
  __m256 r = _mm256_fnmadd_ps(n, splat(0.693359375f), xc);
  r = _mm256_fnmadd_ps(n, splat(-2.12194440e-4f), r);
  __m256 q = splat(1.0f / 5040);
  q = _mm256_fmadd_ps(q, r, splat(1.0f / 720));
  q = _mm256_fmadd_ps(q, r, splat(1.0f / 120));
  q = _mm256_fmadd_ps(q, r, splat(1.0f / 24));
  q = _mm256_fmadd_ps(q, r, splat(1.0f / 6));
  q = _mm256_fmadd_ps(q, r, splat(0.5f));
  const __m256 p = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(r, r), q, r), splat(1.0f));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  const __m256 y = _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
  return _mm256_blendv_ps(y, x, is_nan(x));
}

// log(x) = e*ln2 + log(m), m in [sqrt(1/2), sqrt(2)), with log(m) = log1p(f) written as
// f - (f^2/2 - s*(f^2/2 + R(s^2))), s = f/(2+f), from the series 2*atanh(s); keeping f exact
// and the correction small is what holds the error near half an ulp.
STRATA_AVX2 inline __m256 log8(__m256 x) {
  const __m256 sub = _mm256_cmp_ps(x, splat(1.17549435e-38f), _CMP_LT_OQ);
  const __m256 xs = _mm256_blendv_ps(x, _mm256_mul_ps(x, splat(8388608.0f)), sub);
  const __m256i bits = _mm256_castps_si256(xs);
  __m256i e = _mm256_sub_epi32(_mm256_srli_epi32(bits, 23), _mm256_set1_epi32(127));
  e = _mm256_sub_epi32(e, _mm256_and_si256(_mm256_castps_si256(sub), _mm256_set1_epi32(23)));
  __m256 m = _mm256_castsi256_ps(_mm256_or_si256(
      _mm256_and_si256(bits, _mm256_set1_epi32(0x7fffff)), _mm256_set1_epi32(0x3f800000)));
  const __m256 big = _mm256_cmp_ps(m, splat(1.41421356f), _CMP_GT_OQ);
  m = _mm256_blendv_ps(m, _mm256_mul_ps(m, splat(0.5f)), big);
  e = _mm256_sub_epi32(e, _mm256_castps_si256(big));  // mask is -1 where m was halved
  const __m256 f = _mm256_sub_ps(m, splat(1.0f));
  const __m256 s = _mm256_div_ps(f, _mm256_add_ps(splat(2.0f), f));
  const __m256 hfsq = _mm256_mul_ps(splat(0.5f), _mm256_mul_ps(f, f));
  const __m256 z = _mm256_mul_ps(s, s);
  __m256 R = splat(2.0f / 11);
  R = _mm256_fmadd_ps(R, z, splat(2.0f / 9));
  R = _mm256_fmadd_ps(R, z, splat(2.0f / 7));
  R = _mm256_fmadd_ps(R, z, splat(2.0f / 5));
  R = _mm256_fmadd_ps(R, z, splat(2.0f / 3));
  R = _mm256_mul_ps(R, z);
  const __m256 ef = _mm256_cvtepi32_ps(e);
  const __m256 corr =
      _mm256_fmadd_ps(ef, splat(-2.12194440e-4f), _mm256_mul_ps(s, _mm256_add_ps(hfsq, R)));
  __m256 y = _mm256_fmadd_ps(ef, splat(0.693359375f), _mm256_sub_ps(f, _mm256_sub_ps(hfsq, corr)));
  const __m256 zero = _mm256_setzero_ps();
  y = _mm256_blendv_ps(y, splat(INFINITY), _mm256_cmp_ps(x, splat(INFINITY), _CMP_EQ_OQ));
  y = _mm256_blendv_ps(y, splat(-INFINITY), _mm256_cmp_ps(x, zero, _CMP_EQ_OQ));
  // NaN inputs and negative inputs both give NaN (unordered-or-less-than).
  return _mm256_blendv_ps(y, splat(NAN), _mm256_cmp_ps(x, zero, _CMP_NGE_UQ));
}

// tanh: odd polynomial x + x^3 P(x^2) below 0.625, where 1 - 2/(exp(2|x|)+1) would cancel;
// above, that form loses at most an ulp and saturates to 1 by itself.
STRATA_AVX2 inline __m256 tanh8(__m256 x) {
  const __m256 ax = abs8(x);
  const __m256 u = _mm256_mul_ps(x, x);
  __m256 p = splat(2.147536860e-03f);
  p = _mm256_fmadd_ps(p, u, splat(-8.182673857e-03f));
  p = _mm256_fmadd_ps(p, u, splat(2.170296710e-02f));
  p = _mm256_fmadd_ps(p, u, splat(-5.394720427e-02f));
  p = _mm256_fmadd_ps(p, u, splat(1.333320976e-01f));
  p = _mm256_fmadd_ps(p, u, splat(-3.333333091e-01f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(x, u), p, x);
  const __m256 e = exp8(_mm256_add_ps(ax, ax));
  const __m256 large =
      _mm256_sub_ps(splat(1.0f), _mm256_div_ps(splat(2.0f), _mm256_add_ps(e, splat(1.0f))));
  return _mm256_blendv_ps(copysign8(large, x), small, _mm256_cmp_ps(ax, splat(0.625f), _CMP_LT_OQ));
}

// erf(x)/x as a polynomial in x^2 on |x| < 1.
STRATA_AVX2 inline __m256 erf_small8(__m256 u) {
  __m256 p = splat(-9.641515882e-06f);
  p = _mm256_fmadd_ps(p, u, splat(1.125694782e-04f));
  p = _mm256_fmadd_ps(p, u, splat(-8.482828832e-04f));
  p = _mm256_fmadd_ps(p, u, splat(5.220945432e-03f));
  p = _mm256_fmadd_ps(p, u, splat(-2.686540004e-02f));
  p = _mm256_fmadd_ps(p, u, splat(1.128378197e-01f));
  p = _mm256_fmadd_ps(p, u, splat(-3.761263843e-01f));
  return _mm256_fmadd_ps(p, u, splat(1.128379167e+00f));
}

// erfc(a) for a >= 1 as exp(-a^2) * g(a) / a, with g(a) = a*exp(a^2)*erfc(a) fitted in a - 1.75
// on [1, 2.5) and in 1/a^2 beyond; a^2 is carried as hi + lo so exp(-a^2) keeps full accuracy.
STRATA_AVX2 inline __m256 erfc_tail8(__m256 a) {
  const __m256 ac = _mm256_min_ps(splat(10.1f), _mm256_max_ps(splat(1.0f), a));
  const __m256 hi = _mm256_mul_ps(ac, ac);
  const __m256 lo = _mm256_fmsub_ps(ac, ac, hi);
  __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), hi));
  e = _mm256_fnmadd_ps(e, lo, e);
  const __m256 t = _mm256_sub_ps(ac, splat(1.75f));
  __m256 g1 = splat(-1.930717026e-05f);
  g1 = _mm256_fmadd_ps(g1, t, splat(5.882238095e-05f));
  g1 = _mm256_fmadd_ps(g1, t, splat(-1.494553902e-04f));
  g1 = _mm256_fmadd_ps(g1, t, splat(4.331609548e-04f));
  g1 = _mm256_fmadd_ps(g1, t, splat(-1.203220307e-03f));
  g1 = _mm256_fmadd_ps(g1, t, splat(3.118828304e-03f));
  g1 = _mm256_fmadd_ps(g1, t, splat(-7.552300928e-03f));
  g1 = _mm256_fmadd_ps(g1, t, splat(1.680851515e-02f));
  g1 = _mm256_fmadd_ps(g1, t, splat(-3.339000087e-02f));
  g1 = _mm256_fmadd_ps(g1, t, splat(5.576363358e-02f));
  g1 = _mm256_fmadd_ps(g1, t, splat(4.987014109e-01f));
  const __m256 v = _mm256_div_ps(splat(1.0f), hi);
  __m256 g2 = splat(-2.602673695e+01f);
  g2 = _mm256_fmadd_ps(g2, v, splat(2.314397485e+01f));
  g2 = _mm256_fmadd_ps(g2, v, splat(-1.014919771e+01f));
  g2 = _mm256_fmadd_ps(g2, v, splat(3.271165124e+00f));
  g2 = _mm256_fmadd_ps(g2, v, splat(-1.039629593e+00f));
  g2 = _mm256_fmadd_ps(g2, v, splat(4.226931903e-01f));
  g2 = _mm256_fmadd_ps(g2, v, splat(-2.820891704e-01f));
  g2 = _mm256_fmadd_ps(g2, v, splat(5.641895571e-01f));
  const __m256 g = _mm256_blendv_ps(g2, g1, _mm256_cmp_ps(ac, splat(2.5f), _CMP_LT_OQ));
  const __m256 y = _mm256_div_ps(_mm256_mul_ps(e, g), ac);
  // Beyond 10.1 erfc is below half the smallest subnormal.
  return _mm256_blendv_ps(y, _mm256_setzero_ps(), _mm256_cmp_ps(a, splat(10.1f), _CMP_GT_OQ));
}

STRATA_AVX2 inline __m256 erf8(__m256 x) {
  const __m256 ax = abs8(x);
  const __m256 small = _mm256_mul_ps(x, erf_small8(_mm256_mul_ps(x, x)));
  const __m256 big = copysign8(_mm256_sub_ps(splat(1.0f), erfc_tail8(ax)), x);
  const __m256 y = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, splat(1.0f), _CMP_LT_OQ));
  return _mm256_blendv_ps(y, x, is_nan(x));
}

STRATA_AVX2 inline __m256 erfc8(__m256 x) {
  const __m256 ax = abs8(x);
  const __m256 small = _mm256_fnmadd_ps(x, erf_small8(_mm256_mul_ps(x, x)), splat(1.0f));
  const __m256 tail = erfc_tail8(ax);
  const __m256 big = _mm256_blendv_ps(_mm256_sub_ps(splat(2.0f), tail), tail,
                                      _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GT_OQ));
  const __m256 y = _mm256_blendv_ps(big, small, _mm256_cmp_ps(ax, splat(1.0f), _CMP_LT_OQ));
  return _mm256_blendv_ps(y, x, is_nan(x));
}

}  // namespace avx2
}  // namespace strata::cpu
