// Portable tile operations for the attention kernels, and the run-time choice of table.
#include <cmath>
#include <limits>

#include "core/kernels/cpu/attention_tile_ops.h"
#include "core/kernels/cpu/kernel_types.h"

namespace strata::cpu::attn {
namespace {

template <class T>
void gemm_scalar(int m, int n, int k, const T* a, ptrdiff_t a_rs, ptrdiff_t a_cs, const T* b,
                 ptrdiff_t ldb, T* c, ptrdiff_t ldc, bool accumulate) {
  for (int i = 0; i < m; ++i) {
    T* ci = c + i * ldc;
    if (!accumulate)
      for (int j = 0; j < n; ++j) ci[j] = T(0);
    for (int p = 0; p < k; ++p) {
      const T aip = a[i * a_rs + p * a_cs];
      const T* bp = b + p * ldb;
      for (int j = 0; j < n; ++j) ci[j] += aip * bp[j];
    }
  }
}

template <class T>
void softmax_step_scalar(const ScoreBlock<T>& sb, T* m, T* l, T* o, ptrdiff_t ldo, int d) {
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  const int n = sb.cols;
  for (int r = 0; r < sb.rows; ++r) {
    T* s = sb.s + r * n;
    const T* bias = sb.bias ? sb.bias + r * sb.bias_ld : nullptr;
    const int lim = sb.limit(r);
    T mx = kNegInf;
    for (int j = 0; j < n; ++j) {
      T x = s[j] * sb.scale;
      if (bias) x += bias[j];
      if (sb.kadd) x += sb.kadd[j];
      if (j >= lim) x = kNegInf;
      s[j] = x;
      mx = x > mx ? x : mx;
    }
    const T m_new = m[r] > mx ? m[r] : mx;
    if (m_new == kNegInf) {  // every key so far hidden: nothing to add, nothing to rescale
      for (int j = 0; j < n; ++j) s[j] = T(0);
      continue;
    }
    const T alpha = std::exp(m[r] - m_new);
    T sum = 0;
    for (int j = 0; j < n; ++j) {
      s[j] = std::exp(s[j] - m_new);
      sum += s[j];
    }
    m[r] = m_new;
    l[r] = l[r] * alpha + sum;
    if (alpha != T(1))
      for (int c = 0; c < d; ++c) o[r * ldo + c] *= alpha;
  }
}

template <class T>
void probs_scalar(const ScoreBlock<T>& sb, const T* lse) {
  const int n = sb.cols;
  for (int r = 0; r < sb.rows; ++r) {
    T* s = sb.s + r * n;
    const T* bias = sb.bias ? sb.bias + r * sb.bias_ld : nullptr;
    const int lim = lse[r] == -std::numeric_limits<T>::infinity() ? 0 : sb.limit(r);
    for (int j = 0; j < n; ++j) {
      T x = s[j] * sb.scale;
      if (bias) x += bias[j];
      if (sb.kadd) x += sb.kadd[j];
      s[j] = j < lim ? std::exp(x - lse[r]) : T(0);
    }
  }
}

template <class T>
void dscores_scalar(const T* p, T* dp, int rows, int cols, const T* di, T scale, T* dbias,
                    ptrdiff_t dbias_ld) {
  for (int r = 0; r < rows; ++r)
    for (int j = 0; j < cols; ++j) {
      const T ds = p[r * cols + j] * (dp[r * cols + j] - di[r]);
      if (dbias) dbias[r * dbias_ld + j] += ds;
      dp[r * cols + j] = ds * scale;
    }
}

template <class T>
void transpose_scalar(const T* src, ptrdiff_t src_rs, int rows, int cols, T* dst, ptrdiff_t ldd) {
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) dst[c * ldd + r] = src[r * src_rs + c];
}

template <class T>
void add_scalar(T* dst, const T* src, int n) {
  for (int j = 0; j < n; ++j) dst[j] += src[j];
}

template <class T>
T dot_scalar(const T* x, const T* y, int n) {
  T s = 0;
  for (int j = 0; j < n; ++j) s += x[j] * y[j];
  return s;
}

template <class T>
constexpr TileOps<T> kScalarOps{gemm_scalar<T>,    softmax_step_scalar<T>, probs_scalar<T>,
                                dscores_scalar<T>, transpose_scalar<T>,    add_scalar<T>,
                                dot_scalar<T>};

}  // namespace

template <class T>
const TileOps<T>& tile_ops_portable() {
  return kScalarOps<T>;
}
template const TileOps<float>& tile_ops_portable<float>();
template const TileOps<double>& tile_ops_portable<double>();

template <>
const TileOps<double>& tile_ops<double>() {
  return kScalarOps<double>;
}

template <>
const TileOps<float>& tile_ops<float>() {
  return cpu_has_avx2_fma() ? tile_ops_avx2() : kScalarOps<float>;
}

}  // namespace strata::cpu::attn
