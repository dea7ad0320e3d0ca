#include "core/kernels/cpu/cross_entropy_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/kernels/cpu/simd_avx2.h"
#include "core/kernels/cpu/vec_math.h"

namespace strata::cpu {
namespace {

template <class T>
constexpr bool kVec = !std::is_same_v<T, double>;

// Validated serially before any parallel work, so the error is thrown outside OpenMP and names
// the first bad row.
void check_targets(const char* op, const int64_t* target, int64_t rows, int64_t V,
                   int64_t ignore_index) {
  STRATA_CHECK(rows >= 0 && V > 0, op, ": got rows=", rows, ", V=", V,
               ", expected rows >= 0 and V > 0");
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t t = target[r];
    STRATA_CHECK(t == ignore_index || (t >= 0 && t < V), op, ": target ", t, " at row ", r,
                 " is out of range, expected 0 <= target < V=", V,
                 " or ignore_index=", ignore_index);
  }
}

// Two passes (max and sum of the logits, then the sum of exponentials) rather than an online
// max+sum: the second pass rereads the row from L2 (128 KiB at V = 32128), which costs less than
// the second exp per element that the online form needs.
template <class T>
void row_stats_scalar(const T* x, int64_t V, acc_t<T>& m, acc_t<T>& sum_x, acc_t<T>& sum_e) {
  using A = acc_t<T>;
  m = -std::numeric_limits<A>::infinity();
  for (int64_t j = 0; j < V; ++j) m = std::max(m, to_acc(x[j]));
  sum_x = lane_sum<A>(V, [&](int64_t j) { return to_acc(x[j]); });
  const A mm = m;
  sum_e = lane_sum<A>(V, [&](int64_t j) { return scalar::exp(to_acc(x[j]) - mm); });
}

template <class T>
STRATA_AVX2 void row_stats_avx2(const T* x, int64_t V, float& m, float& sum_x, float& sum_e) {
  using namespace avx2;
  const int64_t nv = V - V % 16;
  __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
  __m256 s0 = _mm256_setzero_ps(), s1 = s0;
  for (int64_t j = 0; j < nv; j += 16) {
    const __m256 a = load8(x + j), b = load8(x + j + 8);
    m0 = _mm256_max_ps(a, m0);
    m1 = _mm256_max_ps(b, m1);
    s0 = _mm256_add_ps(s0, a);
    s1 = _mm256_add_ps(s1, b);
  }
  m = hmax(_mm256_max_ps(m0, m1));
  sum_x = hsum(_mm256_add_ps(s0, s1));
  for (int64_t j = nv; j < V; ++j) {
    m = std::max(m, float(x[j]));
    sum_x += float(x[j]);
  }
  const __m256 mv = _mm256_set1_ps(m);
  __m256 e0 = _mm256_setzero_ps(), e1 = e0;
  for (int64_t j = 0; j < nv; j += 16) {
    e0 = _mm256_add_ps(e0, exp8(_mm256_sub_ps(load8(x + j), mv)));
    e1 = _mm256_add_ps(e1, exp8(_mm256_sub_ps(load8(x + j + 8), mv)));
  }
  sum_e = hsum(_mm256_add_ps(e0, e1));
  for (int64_t j = nv; j < V; ++j) sum_e += scalar::exp(float(x[j]) - m);
}

template <class T>
void grad_row_scalar(const T* x, int64_t V, acc_t<T> lse, acc_t<T> scale, acc_t<T> off, T* dx) {
  for (int64_t j = 0; j < V; ++j)
    dx[j] = from_acc<T>(scale * scalar::exp(to_acc(x[j]) - lse) - off);
}

template <class T>
STRATA_AVX2 void grad_row_avx2(const T* x, int64_t V, float lse, float scale, float off, T* dx) {
  using namespace avx2;
  const int64_t nv = V - V % 8;
  const __m256 lv = _mm256_set1_ps(lse), sv = _mm256_set1_ps(scale), ov = _mm256_set1_ps(off);
  for (int64_t j = 0; j < nv; j += 8)
    store8(dx + j, _mm256_fmsub_ps(sv, exp8(_mm256_sub_ps(load8(x + j), lv)), ov));
  grad_row_scalar<T>(x + nv, V - nv, lse, scale, off, dx + nv);
}

}  // namespace

template <class T>
void cross_entropy_forward(const T* logits, const int64_t* target, int64_t rows, int64_t V,
                           int64_t ignore_index, double label_smoothing, acc_t<T>* loss_per_row,
                           acc_t<T>* lse_per_row) {
  using A = acc_t<T>;
  check_targets("cross_entropy_forward", target, rows, V, ignore_index);
  const bool vec = kVec<T> && cpu_has_avx2_fma();
  const A ls = A(label_smoothing);
#pragma omp parallel for schedule(static) if (use_parallel(rows * V))
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = logits + r * V;
    A m, sum_x, sum_e;
    if constexpr (kVec<T>) {
      if (vec)
        row_stats_avx2(x, V, m, sum_x, sum_e);
      else
        row_stats_scalar(x, V, m, sum_x, sum_e);
    } else {
      row_stats_scalar(x, V, m, sum_x, sum_e);
    }
    const A lse = m + scalar::log(sum_e);
    if (lse_per_row) lse_per_row[r] = lse;
    const int64_t t = target[r];
    if (t == ignore_index) {
      loss_per_row[r] = 0;
      continue;
    }
    // Without smoothing the sum term is skipped, so a -inf logit elsewhere cannot turn 0 * inf
    // into NaN.
    A picked = to_acc(x[t]);
    if (ls != A(0)) picked = (A(1) - ls) * picked + ls / A(V) * sum_x;
    loss_per_row[r] = lse - picked;
  }
}

template <class T>
void cross_entropy_backward(const T* logits, const int64_t* target, const acc_t<T>* lse,
                            const acc_t<T>* dloss_per_row, int64_t rows, int64_t V,
                            int64_t ignore_index, double label_smoothing, T* dlogits) {
  using A = acc_t<T>;
  check_targets("cross_entropy_backward", target, rows, V, ignore_index);
  const bool vec = kVec<T> && cpu_has_avx2_fma();
  const A ls = A(label_smoothing);
#pragma omp parallel for schedule(static) if (use_parallel(rows * V))
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = logits + r * V;
    T* dx = dlogits + r * V;
    const int64_t t = target[r];
    if (t == ignore_index) {
      std::fill(dx, dx + V, T(0));
      continue;
    }
    const A d = dloss_per_row[r];
    const A off = d * ls / A(V);
    if constexpr (kVec<T>) {
      if (vec)
        grad_row_avx2(x, V, lse[r], d, off, dx);
      else
        grad_row_scalar<T>(x, V, lse[r], d, off, dx);
    } else {
      grad_row_scalar<T>(x, V, lse[r], d, off, dx);
    }
    // Recomputed from scratch rather than adjusted, so the target entry rounds only once.
    dx[t] = from_acc<T>(d * scalar::exp(to_acc(x[t]) - lse[r]) - off - d * (A(1) - ls));
  }
}

#define STRATA_INSTANTIATE(T)                                                                 \
  template void cross_entropy_forward<T>(const T*, const int64_t*, int64_t, int64_t, int64_t, \
                                         double, acc_t<T>*, acc_t<T>*);                       \
  template void cross_entropy_backward<T>(const T*, const int64_t*, const acc_t<T>*,          \
                                          const acc_t<T>*, int64_t, int64_t, int64_t, double, T*);
STRATA_INSTANTIATE(float)
STRATA_INSTANTIATE(double)
STRATA_INSTANTIATE(bf16)
#undef STRATA_INSTANTIATE

}  // namespace strata::cpu
