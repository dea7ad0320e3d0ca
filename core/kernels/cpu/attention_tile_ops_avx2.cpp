// AVX2+FMA tile operations for float attention. Every function here carries the target attribute
// and is reached only through tile_ops<float>() after a run-time CPU check, so the library still
// runs on CPUs without AVX2 when built without -march=native.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/kernels/cpu/attention_tile_ops.h"
#include "core/kernels/cpu/simd_avx2.h"

#ifndef STRATA_AVX2
#define STRATA_AVX2 __attribute__((target("avx2,fma")))
#endif

namespace strata::cpu::attn {
namespace {

// exp(x) for 8 floats with x <= ~80 (softmax arguments are x - max <= 0), relative error about
// 2e-7; exactly 0 below -87 and for -inf, our "hidden" marker. Cheaper than a full-range exp: 2^n
// comes from rounding with a magic constant whose low mantissa bits then hold n + 127, and
// e^r, |r| <= ln2/2, is a degree-6 Taylor polynomial. Not NaN-preserving (no NaN reaches here
// from finite inputs). Kept apart from vec_math.h's full-range avx2::exp8 on purpose: flushing to
// 0 instead of producing subnormals keeps them out of the P.V and dS products that follow.
STRATA_AVX2 inline __m256 exp8(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.0f);
  const __m256 keep = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
  x = _mm256_min_ps(_mm256_max_ps(x, lo), _mm256_set1_ps(80.0f));
  const __m256 magic = _mm256_set1_ps(12582912.0f + 127.0f);  // 1.5 * 2^23 + exponent bias
  const __m256 k = _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), magic);
  const __m256 n = _mm256_sub_ps(k, magic);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 720);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // n + 127 lies in [1, 243]: shifting k's low bits into the exponent field builds 2^n.
  const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(k), 23));
  return _mm256_and_ps(_mm256_mul_ps(p, scale), keep);
}

// Lanes j0 + t with j0 + t < lim are all-ones.
STRATA_AVX2 inline __m256 visible8(int j0, int lim) {
  const __m256i idx =
      _mm256_add_epi32(_mm256_set1_epi32(j0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(lim), idx));
}

STRATA_AVX2 inline __m256i tail_mask(int count) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// Register-blocked MR x (8*NV) block of C = A * B: the accumulators stay in registers over the
// whole k loop (MR*NV <= 12 of the 16 ymm registers). TAIL: the last vector of the row is partial.
template <int MR, int NV, bool TAIL>
STRATA_AVX2 void micro(int k, const float* a, ptrdiff_t a_rs, ptrdiff_t a_cs, const float* b,
                       ptrdiff_t ldb, float* c, ptrdiff_t ldc, bool accumulate, __m256i tail) {
  __m256 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i)
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_setzero_ps();
  for (int p = 0; p < k; ++p) {
    const float* bp = b + p * ldb;
    __m256 bv[NV];
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v)
      bv[v] = (TAIL && v == NV - 1) ? _mm256_maskload_ps(bp + 8 * v, tail)
                                    : _mm256_loadu_ps(bp + 8 * v);
    const float* ap = a + p * a_cs;
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m256 av = _mm256_broadcast_ss(ap + i * a_rs);
#pragma GCC unroll 2
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(av, bv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
    float* ci = c + i * ldc;
#pragma GCC unroll 2
    for (int v = 0; v < NV; ++v) {
      if (TAIL && v == NV - 1) {
        __m256 r = acc[i][v];
        if (accumulate) r = _mm256_add_ps(r, _mm256_maskload_ps(ci + 8 * v, tail));
        _mm256_maskstore_ps(ci + 8 * v, tail, r);
      } else {
        __m256 r = acc[i][v];
        if (accumulate) r = _mm256_add_ps(r, _mm256_loadu_ps(ci + 8 * v));
        _mm256_storeu_ps(ci + 8 * v, r);
      }
    }
  }
}

template <int NV, bool TAIL>
STRATA_AVX2 void micro_rows(int mr, int k, const float* a, ptrdiff_t a_rs, ptrdiff_t a_cs,
                            const float* b, ptrdiff_t ldb, float* c, ptrdiff_t ldc, bool accumulate,
                            __m256i tail) {
  switch (mr) {
    case 6:
      return micro<6, NV, TAIL>(k, a, a_rs, a_cs, b, ldb, c, ldc, accumulate, tail);
    case 5:
      return micro<5, NV, TAIL>(k, a, a_rs, a_cs, b, ldb, c, ldc, accumulate, tail);
    case 4:
      return micro<4, NV, TAIL>(k, a, a_rs, a_cs, b, ldb, c, ldc, accumulate, tail);
    case 3:
      return micro<3, NV, TAIL>(k, a, a_rs, a_cs, b, ldb, c, ldc, accumulate, tail);
    case 2:
      return micro<2, NV, TAIL>(k, a, a_rs, a_cs, b, ldb, c, ldc, accumulate, tail);
    default:
      return micro<1, NV, TAIL>(k, a, a_rs, a_cs, b, ldb, c, ldc, accumulate, tail);
  }
}

STRATA_AVX2 void gemm_avx2(int m, int n, int k, const float* a, ptrdiff_t a_rs, ptrdiff_t a_cs,
                           const float* b, ptrdiff_t ldb, float* c, ptrdiff_t ldc,
                           bool accumulate) {
  constexpr int kMr = 6;
  // Column panels of 16 outer, rows inner: the k x 16 panel of B stays in L1 while A streams.
  for (int j0 = 0; j0 < n; j0 += 16) {
    const int nn = std::min(16, n - j0);
    const bool two = nn > 8;
    const int last = nn - (two ? 8 : 0);
    const bool has_tail = last != 8;
    const __m256i tail = tail_mask(last);
    for (int i0 = 0; i0 < m;) {
      // 10 remaining rows go as 5 + 5 rather than 6 + 4: a 4-row block has too few independent
      // accumulators to keep both FMA pipes busy (64-row tiles hit this every time).
      const int mr = m - i0 == 10 ? 5 : std::min(kMr, m - i0);
      const float* ai = a + i0 * a_rs;
      const float* bj = b + j0;
      float* cij = c + i0 * ldc + j0;
      if (two) {
        if (has_tail)
          micro_rows<2, true>(mr, k, ai, a_rs, a_cs, bj, ldb, cij, ldc, accumulate, tail);
        else
          micro_rows<2, false>(mr, k, ai, a_rs, a_cs, bj, ldb, cij, ldc, accumulate, tail);
      } else {
        if (has_tail)
          micro_rows<1, true>(mr, k, ai, a_rs, a_cs, bj, ldb, cij, ldc, accumulate, tail);
        else
          micro_rows<1, false>(mr, k, ai, a_rs, a_cs, bj, ldb, cij, ldc, accumulate, tail);
      }
      i0 += mr;
    }
  }
}

// The row passes below handle the last n % 8 entries through a masked vector, so a row gives the
// same bits whatever its position.
STRATA_AVX2 inline __m256 load_part(const float* p, int j, int n) {
  return n - j >= 8 ? _mm256_loadu_ps(p + j) : _mm256_maskload_ps(p + j, tail_mask(n - j));
}
STRATA_AVX2 inline void store_part(float* p, int j, int n, __m256 v) {
  if (n - j >= 8)
    _mm256_storeu_ps(p + j, v);
  else
    _mm256_maskstore_ps(p + j, tail_mask(n - j), v);
}

// Works in phases over all rows (logits and maxima; exponentials and sums; rescale factors) rather
// than row by row: a row alone is one long dependency chain (max -> exp -> sum), while rows are
// independent, so phase-wise the out-of-order core overlaps many rows.
STRATA_AVX2 void softmax_step_avx2(const ScoreBlock<float>& sb, float* m, float* l, float* o,
                                   ptrdiff_t ldo, int d) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const __m256 ninf = _mm256_set1_ps(kNegInf);
  const __m256 vs = _mm256_set1_ps(sb.scale);
  const int n = sb.cols;
  constexpr int kChunk = 64;
  float m_new[kChunk], sum[kChunk];
  for (int r0 = 0; r0 < sb.rows; r0 += kChunk) {
    const int rows = std::min(kChunk, sb.rows - r0);
    for (int rr = 0; rr < rows; ++rr) {
      const int r = r0 + rr;
      float* s = sb.s + r * n;
      const float* bias = sb.bias ? sb.bias + r * sb.bias_ld : nullptr;
      const int lim = sb.limit(r);
      __m256 vmax = ninf;
      for (int j = 0; j < n; j += 8) {
        __m256 x = _mm256_mul_ps(load_part(s, j, n), vs);
        if (bias) x = _mm256_add_ps(x, load_part(bias, j, n));
        if (sb.kadd) x = _mm256_add_ps(x, load_part(sb.kadd, j, n));
        // Lanes past lim (and past n: lim <= n) are hidden, so they never raise the max.
        if (j + 8 > lim) x = _mm256_blendv_ps(ninf, x, visible8(j, lim));
        store_part(s, j, n, x);
        vmax = _mm256_max_ps(vmax, x);
      }
      m_new[rr] = std::max(m[r], avx2::hmax(vmax));
    }
    for (int rr = 0; rr < rows; ++rr) {
      float* s = sb.s + (r0 + rr) * n;
      // A row with every key so far hidden has only -inf logits: subtracting 0 instead of its
      // -inf maximum keeps them -inf, which exp8 maps to 0 (no NaN from -inf - -inf).
      const __m256 vm = _mm256_set1_ps(m_new[rr] == kNegInf ? 0.0f : m_new[rr]);
      __m256 vsum = _mm256_setzero_ps();
      for (int j = 0; j < n; j += 8) {
        __m256 p = exp8(_mm256_sub_ps(load_part(s, j, n), vm));
        if (j + 8 > n) p = _mm256_and_ps(p, visible8(j, n));
        store_part(s, j, n, p);
        vsum = _mm256_add_ps(vsum, p);
      }
      sum[rr] = avx2::hsum(vsum);
    }
    for (int rr = 0; rr < rows; ++rr) {
      const int r = r0 + rr;
      if (m_new[rr] == kNegInf) continue;  // nothing seen yet: l stays 0, o stays 0
      const float alpha = _mm256_cvtss_f32(exp8(_mm256_set1_ps(m[r] - m_new[rr])));
      m[r] = m_new[rr];
      l[r] = l[r] * alpha + sum[rr];
      if (alpha != 1.0f) {
        const __m256 va = _mm256_set1_ps(alpha);
        float* orow = o + r * ldo;
        for (int c = 0; c < d; c += 8)
          store_part(orow, c, d, _mm256_mul_ps(load_part(orow, c, d), va));
      }
    }
  }
}

STRATA_AVX2 void probs_avx2(const ScoreBlock<float>& sb, const float* lse) {
  const __m256 vs = _mm256_set1_ps(sb.scale);
  const int n = sb.cols;
  for (int r = 0; r < sb.rows; ++r) {
    float* s = sb.s + r * n;
    const float* bias = sb.bias ? sb.bias + r * sb.bias_ld : nullptr;
    const int lim = lse[r] == -std::numeric_limits<float>::infinity() ? 0 : sb.limit(r);
    const __m256 vl = _mm256_set1_ps(lse[r]);
    for (int j = 0; j < n; j += 8) {
      __m256 x = _mm256_mul_ps(load_part(s, j, n), vs);
      if (bias) x = _mm256_add_ps(x, load_part(bias, j, n));
      if (sb.kadd) x = _mm256_add_ps(x, load_part(sb.kadd, j, n));
      __m256 p = exp8(_mm256_sub_ps(x, vl));
      if (j + 8 > lim) p = _mm256_and_ps(p, visible8(j, lim));
      store_part(s, j, n, p);
    }
  }
}

STRATA_AVX2 void dscores_avx2(const float* p, float* dp, int rows, int cols, const float* di,
                              float scale, float* dbias, ptrdiff_t dbias_ld) {
  const __m256 vs = _mm256_set1_ps(scale);
  const int n = cols;
  for (int r = 0; r < rows; ++r) {
    const float* pr = p + r * n;
    float* dr = dp + r * n;
    float* br = dbias ? dbias + r * dbias_ld : nullptr;
    const __m256 vd = _mm256_set1_ps(di[r]);
    for (int j = 0; j < n; j += 8) {
      const __m256 ds = _mm256_mul_ps(load_part(pr, j, n), _mm256_sub_ps(load_part(dr, j, n), vd));
      if (br) store_part(br, j, n, _mm256_add_ps(load_part(br, j, n), ds));
      store_part(dr, j, n, _mm256_mul_ps(ds, vs));
    }
  }
}

// 8 x 8 blocks through registers (unpack, shuffle, lane permute); ragged edges element by element.
STRATA_AVX2 void transpose_avx2(const float* src, ptrdiff_t src_rs, int rows, int cols, float* dst,
                                ptrdiff_t ldd) {
  const int r8 = rows & ~7, c8 = cols & ~7;
  for (int r0 = 0; r0 < r8; r0 += 8) {
    for (int c0 = 0; c0 < c8; c0 += 8) {
      const float* s = src + r0 * src_rs + c0;
      __m256 x[8];
      for (int i = 0; i < 8; ++i) x[i] = _mm256_loadu_ps(s + i * src_rs);
      const __m256 t0 = _mm256_unpacklo_ps(x[0], x[1]), t1 = _mm256_unpackhi_ps(x[0], x[1]);
      const __m256 t2 = _mm256_unpacklo_ps(x[2], x[3]), t3 = _mm256_unpackhi_ps(x[2], x[3]);
      const __m256 t4 = _mm256_unpacklo_ps(x[4], x[5]), t5 = _mm256_unpackhi_ps(x[4], x[5]);
      const __m256 t6 = _mm256_unpacklo_ps(x[6], x[7]), t7 = _mm256_unpackhi_ps(x[6], x[7]);
      const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
      const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
      const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
      float* d = dst + c0 * ldd + r0;
      _mm256_storeu_ps(d + 0 * ldd, _mm256_permute2f128_ps(u0, u4, 0x20));
      _mm256_storeu_ps(d + 1 * ldd, _mm256_permute2f128_ps(u1, u5, 0x20));
      _mm256_storeu_ps(d + 2 * ldd, _mm256_permute2f128_ps(u2, u6, 0x20));
      _mm256_storeu_ps(d + 3 * ldd, _mm256_permute2f128_ps(u3, u7, 0x20));
      _mm256_storeu_ps(d + 4 * ldd, _mm256_permute2f128_ps(u0, u4, 0x31));
      _mm256_storeu_ps(d + 5 * ldd, _mm256_permute2f128_ps(u1, u5, 0x31));
      _mm256_storeu_ps(d + 6 * ldd, _mm256_permute2f128_ps(u2, u6, 0x31));
      _mm256_storeu_ps(d + 7 * ldd, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (int r = r0; r < r0 + 8; ++r)
      for (int c = c8; c < cols; ++c) dst[c * ldd + r] = src[r * src_rs + c];
  }
  for (int r = r8; r < rows; ++r)
    for (int c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * src_rs + c];
}

STRATA_AVX2 void add_avx2(float* dst, const float* src, int n) {
  for (int j = 0; j < n; j += 8)
    store_part(dst, j, n, _mm256_add_ps(load_part(dst, j, n), load_part(src, j, n)));
}

STRATA_AVX2 float dot_avx2(const float* x, const float* y, int n) {
  __m256 acc = _mm256_setzero_ps();
  for (int j = 0; j < n; j += 8) acc = _mm256_fmadd_ps(load_part(x, j, n), load_part(y, j, n), acc);
  return avx2::hsum(acc);
}

constexpr TileOps<float> kAvx2Ops{gemm_avx2,      softmax_step_avx2, probs_avx2, dscores_avx2,
                                  transpose_avx2, add_avx2,          dot_avx2};

}  // namespace

const TileOps<float>& tile_ops_avx2() {
  return kAvx2Ops;
}

}  // namespace strata::cpu::attn
