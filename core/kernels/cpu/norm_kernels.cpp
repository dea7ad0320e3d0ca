#include "core/kernels/cpu/norm_kernels.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/kernels/cpu/simd_avx2.h"

namespace strata::cpu {
namespace {

template <class T>
constexpr bool kVec = !std::is_same_v<T, double>;

// Scalar rows. `mean` is 0 for RMSNorm, which is LayerNorm without centring and without bias:
// sharing the code keeps the two in step.
template <class T>
void forward_row_scalar(const T* x, const T* w, const T* b, T* y, acc_t<T> mean, acc_t<T> rstd,
                        int64_t n) {
  using A = acc_t<T>;
  for (int64_t j = 0; j < n; ++j) {
    A v = (to_acc(x[j]) - mean) * rstd;
    if (w) v *= to_acc(w[j]);
    if (b) v += to_acc(b[j]);
    y[j] = from_acc<T>(v);
  }
}

template <class T>
STRATA_AVX2 void forward_row_avx2(const T* x, const T* w, const T* b, T* y, float mean, float rstd,
                                  int64_t n) {
  using namespace avx2;
  const int64_t nv = n - n % 8;
  const __m256 mv = _mm256_set1_ps(mean), rv = _mm256_set1_ps(rstd);
  for (int64_t j = 0; j < nv; j += 8) {
    __m256 v = _mm256_mul_ps(_mm256_sub_ps(load8(x + j), mv), rv);
    if (w) v = _mm256_mul_ps(v, load8(w + j));
    if (b) v = _mm256_add_ps(v, load8(b + j));
    store8(y + j, v);
  }
  forward_row_scalar(x + nv, w ? w + nv : nullptr, b ? b + nv : nullptr, y + nv, mean, rstd,
                     n - nv);
}

// Sum of x and of (x - c)^2 over a row.
template <class T>
acc_t<T> sum_scalar(const T* x, int64_t n) {
  return lane_sum<acc_t<T>>(n, [&](int64_t j) { return to_acc(x[j]); });
}
template <class T>
acc_t<T> sumsq_scalar(const T* x, acc_t<T> c, int64_t n) {
  return lane_sum<acc_t<T>>(n, [&](int64_t j) {
    const acc_t<T> d = to_acc(x[j]) - c;
    return d * d;
  });
}
template <class T>
STRATA_AVX2 float sum_avx2(const T* x, int64_t n) {
  using namespace avx2;
  const int64_t nv = n - n % 16;
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  for (int64_t j = 0; j < nv; j += 16) {
    s0 = _mm256_add_ps(s0, load8(x + j));
    s1 = _mm256_add_ps(s1, load8(x + j + 8));
  }
  return hsum(_mm256_add_ps(s0, s1)) + sum_scalar(x + nv, n - nv);
}
template <class T>
STRATA_AVX2 float sumsq_avx2(const T* x, float c, int64_t n) {
  using namespace avx2;
  const int64_t nv = n - n % 16;
  const __m256 cv = _mm256_set1_ps(c);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  for (int64_t j = 0; j < nv; j += 16) {
    const __m256 d0 = _mm256_sub_ps(load8(x + j), cv), d1 = _mm256_sub_ps(load8(x + j + 8), cv);
    s0 = _mm256_fmadd_ps(d0, d0, s0);
    s1 = _mm256_fmadd_ps(d1, d1, s1);
  }
  return hsum(_mm256_add_ps(s0, s1)) + sumsq_scalar(x + nv, c, n - nv);
}

// Backward of one row given its centre c (mean, or 0 for RMSNorm) and rstd:
//   xhat = (x - c) * rstd, g = dy * w,
//   dx = rstd * (g - centred * mean(g) - xhat * mean(g * xhat)),
// and dw += dy * xhat, db += dy into f32/f64 partial rows.
template <class T>
void backward_row_scalar(const T* x, const T* w, const T* dy, T* dx, acc_t<T>* pdw, acc_t<T>* pdb,
                         acc_t<T> c, acc_t<T> rstd, bool centred, int64_t n) {
  using A = acc_t<T>;
  A sg = 0, sgx = 0;
  for (int64_t j = 0; j < n; ++j) {
    const A xh = (to_acc(x[j]) - c) * rstd;
    const A d = to_acc(dy[j]);
    const A g = w ? d * to_acc(w[j]) : d;
    sg += g;
    sgx += g * xh;
    if (pdw) pdw[j] += d * xh;
    if (pdb) pdb[j] += d;
  }
  if (!dx) return;
  const A inv_n = A(1) / A(n);
  const A mg = centred ? sg * inv_n : A(0), mgx = sgx * inv_n;
  for (int64_t j = 0; j < n; ++j) {
    const A xh = (to_acc(x[j]) - c) * rstd;
    const A g = w ? to_acc(dy[j]) * to_acc(w[j]) : to_acc(dy[j]);
    dx[j] = from_acc<T>(rstd * (g - mg - xh * mgx));
  }
}

template <class T>
STRATA_AVX2 void backward_row_avx2(const T* x, const T* w, const T* dy, T* dx, float* pdw,
                                   float* pdb, float c, float rstd, bool centred, int64_t n) {
  using namespace avx2;
  const int64_t nv = n - n % 8;
  const __m256 cv = _mm256_set1_ps(c), rv = _mm256_set1_ps(rstd);
  __m256 vsg = _mm256_setzero_ps(), vsgx = _mm256_setzero_ps();
  for (int64_t j = 0; j < nv; j += 8) {
    const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(load8(x + j), cv), rv);
    const __m256 d = load8(dy + j);
    const __m256 g = w ? _mm256_mul_ps(d, load8(w + j)) : d;
    vsg = _mm256_add_ps(vsg, g);
    vsgx = _mm256_fmadd_ps(g, xh, vsgx);
    if (pdw) _mm256_storeu_ps(pdw + j, _mm256_fmadd_ps(d, xh, _mm256_loadu_ps(pdw + j)));
    if (pdb) _mm256_storeu_ps(pdb + j, _mm256_add_ps(d, _mm256_loadu_ps(pdb + j)));
  }
  float sg = hsum(vsg), sgx = hsum(vsgx);
  for (int64_t j = nv; j < n; ++j) {
    const float xh = (float(x[j]) - c) * rstd;
    const float d = float(dy[j]);
    const float g = w ? d * float(w[j]) : d;
    sg += g;
    sgx += g * xh;
    if (pdw) pdw[j] += d * xh;
    if (pdb) pdb[j] += d;
  }
  if (!dx) return;
  const float inv_n = 1.0f / float(n);
  const float mg = centred ? sg * inv_n : 0.0f, mgx = sgx * inv_n;
  const __m256 mgv = _mm256_set1_ps(mg), mgxv = _mm256_set1_ps(mgx);
  for (int64_t j = 0; j < nv; j += 8) {
    const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(load8(x + j), cv), rv);
    const __m256 d = load8(dy + j);
    const __m256 g = w ? _mm256_mul_ps(d, load8(w + j)) : d;
    store8(dx + j, _mm256_mul_ps(rv, _mm256_fnmadd_ps(xh, mgxv, _mm256_sub_ps(g, mgv))));
  }
  for (int64_t j = nv; j < n; ++j) {
    const float xh = (float(x[j]) - c) * rstd;
    const float g = w ? float(dy[j]) * float(w[j]) : float(dy[j]);
    dx[j] = T(rstd * (g - mg - xh * mgx));
  }
}

void check_shape(const char* op, int64_t rows, int64_t n) {
  STRATA_CHECK(rows >= 0 && n >= 0, op, ": got rows=", rows, ", n=", n, ", expected both >= 0");
}

// Row statistics and normalisation shared by both norms; centred selects LayerNorm.
template <class T>
void norm_forward(const T* x, const T* w, const T* b, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                  int64_t rows, int64_t n, double eps, bool centred) {
  using A = acc_t<T>;
  if (n == 0) return;
  const bool vec = kVec<T> && cpu_has_avx2_fma();
#pragma omp parallel for schedule(static) if (use_parallel(rows * n))
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * n;
    T* yr = y + r * n;
    A c = 0, ss;
    if constexpr (kVec<T>) {
      if (vec) {
        if (centred) c = sum_avx2(xr, n) / float(n);
        ss = sumsq_avx2(xr, c, n);
      } else {
        if (centred) c = sum_scalar(xr, n) / A(n);
        ss = sumsq_scalar(xr, c, n);
      }
    } else {
      if (centred) c = sum_scalar(xr, n) / A(n);
      ss = sumsq_scalar(xr, c, n);
    }
    const A rs = A(1) / std::sqrt(ss / A(n) + A(eps));
    if (mean) mean[r] = c;
    rstd[r] = rs;
    if constexpr (kVec<T>) {
      if (vec) {
        forward_row_avx2(xr, w, b, yr, c, rs, n);
        continue;
      }
    }
    forward_row_scalar(xr, w, b, yr, c, rs, n);
  }
}

// Rows are processed in fixed chunks; each chunk owns one partial row of dw/db sums. The chunk
// size depends only on the shape, so the combined sums are the same for every thread count.
template <class T>
void norm_backward(const T* x, const T* w, const acc_t<T>* mean, const acc_t<T>* rstd, const T* dy,
                   T* dx, T* dw, T* db, int64_t rows, int64_t n, bool centred) {
  using A = acc_t<T>;
  if (n == 0) return;
  if (rows == 0) {
    for (int64_t j = 0; j < n; ++j) {
      if (dw) dw[j] = T(0);
      if (db) db[j] = T(0);
    }
    return;
  }
  constexpr int64_t kMaxChunks = 64;
  const int64_t chunk = std::max<int64_t>(4, (rows + kMaxChunks - 1) / kMaxChunks);
  const int64_t nchunks = (rows + chunk - 1) / chunk;
  std::vector<A> pdw(dw ? size_t(nchunks * n) : 0), pdb(db ? size_t(nchunks * n) : 0);
  const bool vec = kVec<T> && cpu_has_avx2_fma();
#pragma omp parallel for schedule(static) if (use_parallel(rows * n))
  for (int64_t ch = 0; ch < nchunks; ++ch) {
    A* cdw = dw ? pdw.data() + ch * n : nullptr;
    A* cdb = db ? pdb.data() + ch * n : nullptr;
    const int64_t r_end = std::min(rows, (ch + 1) * chunk);
    for (int64_t r = ch * chunk; r < r_end; ++r) {
      const A c = centred ? mean[r] : A(0);
      const int64_t o = r * n;
      if constexpr (kVec<T>) {
        if (vec) {
          backward_row_avx2(x + o, w, dy + o, dx ? dx + o : nullptr, cdw, cdb, c, rstd[r], centred,
                            n);
          continue;
        }
      }
      backward_row_scalar(x + o, w, dy + o, dx ? dx + o : nullptr, cdw, cdb, c, rstd[r], centred,
                          n);
    }
  }
  if (!dw && !db) return;
#pragma omp parallel for schedule(static) if (use_parallel(nchunks * n))
  for (int64_t j = 0; j < n; ++j) {
    A sw = 0, sb = 0;
    for (int64_t ch = 0; ch < nchunks; ++ch) {
      if (dw) sw += pdw[ch * n + j];
      if (db) sb += pdb[ch * n + j];
    }
    if (dw) dw[j] = from_acc<T>(sw);
    if (db) db[j] = from_acc<T>(sb);
  }
}

}  // namespace

template <class T>
void layer_norm_forward(const T* x, const T* w, const T* b, T* y, acc_t<T>* mean, acc_t<T>* rstd,
                        int64_t rows, int64_t n, double eps) {
  check_shape("layer_norm_forward", rows, n);
  norm_forward(x, w, b, y, mean, rstd, rows, n, eps, true);
}

template <class T>
void layer_norm_backward(const T* x, const T* w, const acc_t<T>* mean, const acc_t<T>* rstd,
                         const T* dy, T* dx, T* dw, T* db, int64_t rows, int64_t n) {
  check_shape("layer_norm_backward", rows, n);
  norm_backward(x, w, mean, rstd, dy, dx, dw, db, rows, n, true);
}

template <class T>
void rms_norm_forward(const T* x, const T* w, T* y, acc_t<T>* rstd, int64_t rows, int64_t n,
                      double eps) {
  check_shape("rms_norm_forward", rows, n);
  norm_forward<T>(x, w, nullptr, y, nullptr, rstd, rows, n, eps, false);
}

template <class T>
void rms_norm_backward(const T* x, const T* w, const acc_t<T>* rstd, const T* dy, T* dx, T* dw,
                       int64_t rows, int64_t n) {
  check_shape("rms_norm_backward", rows, n);
  norm_backward<T>(x, w, nullptr, rstd, dy, dx, dw, nullptr, rows, n, false);
}

#define STRATA_INSTANTIATE(T)                                                                     \
  template void layer_norm_forward<T>(const T*, const T*, const T*, T*, acc_t<T>*, acc_t<T>*,     \
                                      int64_t, int64_t, double);                                  \
  template void layer_norm_backward<T>(const T*, const T*, const acc_t<T>*, const acc_t<T>*,      \
                                       const T*, T*, T*, T*, int64_t, int64_t);                   \
  template void rms_norm_forward<T>(const T*, const T*, T*, acc_t<T>*, int64_t, int64_t, double); \
  template void rms_norm_backward<T>(const T*, const T*, const acc_t<T>*, const T*, T*, T*,       \
                                     int64_t, int64_t);
STRATA_INSTANTIATE(float)
STRATA_INSTANTIATE(double)
STRATA_INSTANTIATE(bf16)
#undef STRATA_INSTANTIATE

}  // namespace strata::cpu
