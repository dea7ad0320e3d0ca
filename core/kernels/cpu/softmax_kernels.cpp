#include "core/kernels/cpu/softmax_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/kernels/cpu/simd_avx2.h"
#include "core/kernels/cpu/vec_math.h"

namespace strata::cpu {
namespace {

template <class T>
void forward_row_scalar(const T* x, T* y, int64_t n, bool log) {
  using A = acc_t<T>;
  A m = -std::numeric_limits<A>::infinity();
  for (int64_t j = 0; j < n; ++j) m = std::max(m, to_acc(x[j]));
  const A s = lane_sum<A>(n, [&](int64_t j) { return scalar::exp(to_acc(x[j]) - m); });
  if (log) {
    const A shift = m + scalar::log(s);
    for (int64_t j = 0; j < n; ++j) y[j] = from_acc<T>(to_acc(x[j]) - shift);
  } else {
    const A inv = A(1) / s;
    for (int64_t j = 0; j < n; ++j) y[j] = from_acc<T>(scalar::exp(to_acc(x[j]) - m) * inv);
  }
}

template <class T>
void backward_row_scalar(const T* y, const T* dy, T* dx, int64_t n, bool log) {
  using A = acc_t<T>;
  const A s = log ? lane_sum<A>(n, [&](int64_t j) { return to_acc(dy[j]); })
                  : lane_sum<A>(n, [&](int64_t j) { return to_acc(dy[j]) * to_acc(y[j]); });
  if (log) {
    for (int64_t j = 0; j < n; ++j)
      dx[j] = from_acc<T>(to_acc(dy[j]) - scalar::exp(to_acc(y[j])) * s);
  } else {
    for (int64_t j = 0; j < n; ++j) dx[j] = from_acc<T>(to_acc(y[j]) * (to_acc(dy[j]) - s));
  }
}

template <class T>
STRATA_AVX2 void forward_row_avx2(const T* x, T* y, int64_t n, bool log) {
  using namespace avx2;
  const int64_t nv = n - n % 8;
  __m256 vm = _mm256_set1_ps(-INFINITY);
  for (int64_t j = 0; j < nv; j += 8) vm = _mm256_max_ps(load8(x + j), vm);
  float m = hmax(vm);
  for (int64_t j = nv; j < n; ++j) m = std::max(m, float(x[j]));
  const __m256 mv = _mm256_set1_ps(m);
  // f32 output holds exp(x - m) between the passes, sparing the second exp; bf16 output is too
  // coarse for that, so it recomputes.
  constexpr bool keep = std::is_same_v<T, float>;
  __m256 vs = _mm256_setzero_ps();
  for (int64_t j = 0; j < nv; j += 8) {
    const __m256 e = exp8(_mm256_sub_ps(load8(x + j), mv));
    if (keep && !log) store8(y + j, e);
    vs = _mm256_add_ps(vs, e);
  }
  float s = hsum(vs);
  for (int64_t j = nv; j < n; ++j) s += scalar::exp(float(x[j]) - m);
  if (log) {
    const float shift = m + scalar::log(s);
    const __m256 sv = _mm256_set1_ps(shift);
    for (int64_t j = 0; j < nv; j += 8) store8(y + j, _mm256_sub_ps(load8(x + j), sv));
    for (int64_t j = nv; j < n; ++j) y[j] = T(float(x[j]) - shift);
    return;
  }
  const float inv = 1.0f / s;
  const __m256 iv = _mm256_set1_ps(inv);
  for (int64_t j = 0; j < nv; j += 8) {
    const __m256 e = keep ? load8(y + j) : exp8(_mm256_sub_ps(load8(x + j), mv));
    store8(y + j, _mm256_mul_ps(e, iv));
  }
  for (int64_t j = nv; j < n; ++j) y[j] = T(scalar::exp(float(x[j]) - m) * inv);
}

template <class T>
STRATA_AVX2 void backward_row_avx2(const T* y, const T* dy, T* dx, int64_t n, bool log) {
  using namespace avx2;
  const int64_t nv = n - n % 8;
  __m256 vs = _mm256_setzero_ps();
  if (log) {
    for (int64_t j = 0; j < nv; j += 8) vs = _mm256_add_ps(vs, load8(dy + j));
  } else {
    for (int64_t j = 0; j < nv; j += 8) vs = _mm256_fmadd_ps(load8(dy + j), load8(y + j), vs);
  }
  float s = hsum(vs);
  for (int64_t j = nv; j < n; ++j) s += log ? float(dy[j]) : float(dy[j]) * float(y[j]);
  const __m256 sv = _mm256_set1_ps(s);
  if (log) {
    for (int64_t j = 0; j < nv; j += 8)
      store8(dx + j, _mm256_fnmadd_ps(exp8(load8(y + j)), sv, load8(dy + j)));
    for (int64_t j = nv; j < n; ++j) dx[j] = T(float(dy[j]) - scalar::exp(float(y[j])) * s);
  } else {
    for (int64_t j = 0; j < nv; j += 8)
      store8(dx + j, _mm256_mul_ps(load8(y + j), _mm256_sub_ps(load8(dy + j), sv)));
    for (int64_t j = nv; j < n; ++j) dx[j] = T(float(y[j]) * (float(dy[j]) - s));
  }
}

void check_shape(const char* op, int64_t rows, int64_t n) {
  STRATA_CHECK(rows >= 0 && n >= 0, op, ": got rows=", rows, ", n=", n, ", expected both >= 0");
}

}  // namespace

template <class T>
void softmax_forward(const T* x, T* y, int64_t rows, int64_t n, bool log) {
  check_shape("softmax_forward", rows, n);
  const bool vec = !std::is_same_v<T, double> && cpu_has_avx2_fma();
#pragma omp parallel for schedule(static) if (use_parallel(rows * n))
  for (int64_t r = 0; r < rows; ++r) {
    if constexpr (!std::is_same_v<T, double>) {
      if (vec) {
        forward_row_avx2(x + r * n, y + r * n, n, log);
        continue;
      }
    }
    forward_row_scalar(x + r * n, y + r * n, n, log);
  }
}

template <class T>
void softmax_backward(const T* y, const T* dy, T* dx, int64_t rows, int64_t n, bool log) {
  check_shape("softmax_backward", rows, n);
  const bool vec = !std::is_same_v<T, double> && cpu_has_avx2_fma();
#pragma omp parallel for schedule(static) if (use_parallel(rows * n))
  for (int64_t r = 0; r < rows; ++r) {
    if constexpr (!std::is_same_v<T, double>) {
      if (vec) {
        backward_row_avx2(y + r * n, dy + r * n, dx + r * n, n, log);
        continue;
      }
    }
    backward_row_scalar(y + r * n, dy + r * n, dx + r * n, n, log);
  }
}

#define STRATA_INSTANTIATE(T)                                             \
  template void softmax_forward<T>(const T*, T*, int64_t, int64_t, bool); \
  template void softmax_backward<T>(const T*, const T*, T*, int64_t, int64_t, bool);
STRATA_INSTANTIATE(float)
STRATA_INSTANTIATE(double)
STRATA_INSTANTIATE(bf16)
#undef STRATA_INSTANTIATE

}  // namespace strata::cpu
