#include "optim/kernels/adam_kernel.h"

#include <immintrin.h>
#include <omp.h>

#include <cmath>
#include <vector>

#include "core/cpu_features.h"

namespace strata::optim::kernels {
namespace {

// Chunk size for the element-wise loops: large enough that a chunk amortises the scheduling, small
// enough that a 1M-element tensor still spreads over the cores.
constexpr int64_t kChunk = 16384;

bool use_avx2() {
  static const bool ok = cpu_features().avx2 && cpu_features().fma;
  return ok;
}

template <class F>
void for_chunks(int64_t n, F&& body) {
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  const bool parallel = chunks > 1 && !omp_in_parallel() && omp_get_max_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t lo = c * kChunk;
    const int64_t hi = std::min(n, lo + kChunk);
    body(lo, hi);
  }
}

inline float to_f(float x) {
  return x;
}
inline float to_f(bf16 x) {
  return float(x);
}
inline double to_f(double x) {
  return x;
}

template <class S>
inline S adam_element(S p, S g, S& m, S& v, const AdamScalars<S>& s) {
  p = p * s.pre_decay;
  m = s.lerp_m ? std::fma(s.w1, g - m, m) : std::fma(g, s.w1, s.b1 * m);
  v = s.b2 * v + (s.w2 * g) * g;
  const S denom = std::sqrt(v) / s.denom_div + s.eps;
  p = p + (s.neg_step * m) / denom;
  if (s.post_decay != S(0)) p = std::fma(p, s.post_decay, p);
  return p;
}

template <class P, class G, class S>
void adam_scalar_range(P* p, const G* g, S* m, S* v, int64_t lo, int64_t hi,
                       const AdamScalars<S>& s) {
  for (int64_t i = lo; i < hi; ++i) {
    const S r = adam_element<S>(S(to_f(p[i])), S(to_f(g[i])), m[i], v[i], s);
    p[i] = P(r);
  }
}

__attribute__((target("avx2,fma"))) void adam_avx2_range(float* p, const float* g, float* m,
                                                         float* v, int64_t lo, int64_t hi,
                                                         const AdamScalars<float>& s) {
  const __m256 pre = _mm256_set1_ps(s.pre_decay);
  const __m256 b1 = _mm256_set1_ps(s.b1), w1 = _mm256_set1_ps(s.w1);
  const __m256 b2 = _mm256_set1_ps(s.b2), w2 = _mm256_set1_ps(s.w2);
  const __m256 dd = _mm256_set1_ps(s.denom_div), eps = _mm256_set1_ps(s.eps);
  const __m256 ns = _mm256_set1_ps(s.neg_step), post = _mm256_set1_ps(s.post_decay);
  const bool do_post = s.post_decay != 0.0f;
  int64_t i = lo;
  for (; i + 8 <= hi; i += 8) {
    __m256 vp = _mm256_mul_ps(_mm256_loadu_ps(p + i), pre);
    const __m256 vg = _mm256_loadu_ps(g + i);
    __m256 vm = _mm256_loadu_ps(m + i);
    __m256 vv = _mm256_loadu_ps(v + i);
    vm = s.lerp_m ? _mm256_fmadd_ps(w1, _mm256_sub_ps(vg, vm), vm)
                  : _mm256_fmadd_ps(vg, w1, _mm256_mul_ps(b1, vm));
    vv = _mm256_add_ps(_mm256_mul_ps(b2, vv), _mm256_mul_ps(_mm256_mul_ps(w2, vg), vg));
    const __m256 den = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vv), dd), eps);
    vp = _mm256_add_ps(vp, _mm256_div_ps(_mm256_mul_ps(ns, vm), den));
    if (do_post) vp = _mm256_fmadd_ps(vp, post, vp);
    _mm256_storeu_ps(p + i, vp);
    _mm256_storeu_ps(m + i, vm);
    _mm256_storeu_ps(v + i, vv);
  }
  adam_scalar_range<float, float, float>(p, g, m, v, i, hi, s);
}

// Eight f64 lanes combined in a fixed tree; the AVX2 version below reproduces it bit for bit.
template <class T>
double block_sum_squares_scalar(const T* x, int64_t n) {
  double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) {
      const double e = double(to_f(x[i + j]));
      acc[j] = acc[j] + e * e;
    }
  for (int j = 0; i < n; ++i, ++j) {
    const double e = double(to_f(x[i]));
    acc[j] = acc[j] + e * e;
  }
  const double t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6],
               t3 = acc[3] + acc[7];
  return (t0 + t2) + (t1 + t3);
}

__attribute__((target("avx2,fma"))) double block_sum_squares_avx2(const float* x, int64_t n) {
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256d a = _mm256_cvtps_pd(_mm_loadu_ps(x + i));
    const __m256d b = _mm256_cvtps_pd(_mm_loadu_ps(x + i + 4));
    lo = _mm256_add_pd(lo, _mm256_mul_pd(a, a));
    hi = _mm256_add_pd(hi, _mm256_mul_pd(b, b));
  }
  alignas(32) double acc[8];
  _mm256_store_pd(acc, lo);
  _mm256_store_pd(acc + 4, hi);
  for (int j = 0; i < n; ++i, ++j) {
    const double e = double(x[i]);
    acc[j] = acc[j] + e * e;
  }
  const double t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6],
               t3 = acc[3] + acc[7];
  return (t0 + t2) + (t1 + t3);
}

template <class T, class BlockFn>
double blocked_sum(const T* x, int64_t n, BlockFn&& block) {
  const int64_t blocks = (n + kSumBlock - 1) / kSumBlock;
  if (blocks <= 1) return n > 0 ? block(x, n) : 0.0;
  std::vector<double> partial(size_t(blocks), 0.0);
  const bool parallel = blocks > 4 && !omp_in_parallel() && omp_get_max_threads() > 1;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kSumBlock;
    partial[size_t(b)] = block(x + lo, std::min(kSumBlock, n - lo));
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace

void adam_update_scalar(float* p, const float* g, float* m, float* v, int64_t n,
                        const AdamScalars<float>& s) {
  for_chunks(n, [&](int64_t lo, int64_t hi) { adam_scalar_range(p, g, m, v, lo, hi, s); });
}

bool adam_update_avx2_available() {
  return use_avx2();
}

void adam_update_avx2(float* p, const float* g, float* m, float* v, int64_t n,
                      const AdamScalars<float>& s) {
  for_chunks(n, [&](int64_t lo, int64_t hi) { adam_avx2_range(p, g, m, v, lo, hi, s); });
}

void adam_update(float* p, const float* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s) {
  if (use_avx2())
    adam_update_avx2(p, g, m, v, n, s);
  else
    adam_update_scalar(p, g, m, v, n, s);
}

void adam_update(double* p, const double* g, double* m, double* v, int64_t n,
                 const AdamScalars<double>& s) {
  for_chunks(n, [&](int64_t lo, int64_t hi) { adam_scalar_range(p, g, m, v, lo, hi, s); });
}

void adam_update(bf16* p, const bf16* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s) {
  for_chunks(n, [&](int64_t lo, int64_t hi) { adam_scalar_range(p, g, m, v, lo, hi, s); });
}

void adam_update(bf16* p, const float* g, float* m, float* v, int64_t n,
                 const AdamScalars<float>& s) {
  for_chunks(n, [&](int64_t lo, int64_t hi) { adam_scalar_range(p, g, m, v, lo, hi, s); });
}

double sum_squares_scalar(const float* x, int64_t n) {
  return blocked_sum(x, n,
                     [](const float* b, int64_t k) { return block_sum_squares_scalar(b, k); });
}

double sum_squares(const float* x, int64_t n) {
  if (use_avx2())
    return blocked_sum(x, n,
                       [](const float* b, int64_t k) { return block_sum_squares_avx2(b, k); });
  return sum_squares_scalar(x, n);
}

double sum_squares(const double* x, int64_t n) {
  return blocked_sum(x, n,
                     [](const double* b, int64_t k) { return block_sum_squares_scalar(b, k); });
}

double sum_squares(const bf16* x, int64_t n) {
  return blocked_sum(x, n, [](const bf16* b, int64_t k) { return block_sum_squares_scalar(b, k); });
}

void scale(float* x, int64_t n, float c) {
  for_chunks(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) x[i] = x[i] * c;
  });
}

void scale(double* x, int64_t n, double c) {
  for_chunks(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) x[i] = x[i] * c;
  });
}

void scale(bf16* x, int64_t n, float c) {
  for_chunks(n, [&](int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) x[i] = bf16(float(x[i]) * c);
  });
}

}  // namespace strata::optim::kernels
