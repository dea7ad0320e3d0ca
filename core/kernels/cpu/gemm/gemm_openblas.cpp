// The cblas backend. OpenBLAS runs its own thread pool, sized by the runtime (never set here).
#include <cblas.h>
#include <omp.h>

#include <climits>
#include <vector>

#include "core/error.h"
#include "core/kernels/cpu/gemm/gemm_backends.h"

namespace strata::gemm::detail {
namespace {

CBLAS_TRANSPOSE cblas_trans(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}

// cblas takes 32-bit ints (Debian's OpenBLAS is not the ILP64 build).
void check_int_range(const char* op, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
                     int64_t ldc) {
  for (int64_t v : {m, n, k, lda, ldb, ldc}) {
    STRATA_CHECK(v <= INT_MAX, op, ": kernel openblas takes sizes and strides up to ", INT_MAX,
                 ", got ", v, "; use kernel avx2");
  }
}

// Widens a rows x cols bf16 matrix (row stride ld) into a dense f32 one (row stride cols).
std::vector<float> widen(const bf16* x, int64_t rows, int64_t cols, int64_t ld) {
  std::vector<float> out(size_t(rows * cols));
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && rows * cols > (1 << 16))
  for (int64_t i = 0; i < rows; ++i) {
    for (int64_t j = 0; j < cols; ++j) out[size_t(i * cols + j)] = float(x[i * ld + j]);
  }
  return out;
}

}  // namespace

void openblas_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc) {
  check_int_range("sgemm", m, n, k, lda, ldb, ldc);
  cblas_sgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), int(m), int(n), int(k), alpha, a,
              int(lda), b, int(ldb), beta, c, int(ldc));
}

void openblas_dgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                    const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                    double* c, int64_t ldc) {
  check_int_range("dgemm", m, n, k, lda, ldb, ldc);
  cblas_dgemm(CblasRowMajor, cblas_trans(ta), cblas_trans(tb), int(m), int(n), int(k), alpha, a,
              int(lda), b, int(ldb), beta, c, int(ldc));
}

// Debian's OpenBLAS 0.3.21 declares cblas_sbgemm but is built without it, so widen to f32
// (exact) and use sgemm: same result as a native bf16 GEMM with f32 accumulation.
void openblas_bf16gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                       const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, float* c,
                       int64_t ldc) {
  const int64_t a_rows = ta ? k : m, a_cols = ta ? m : k;
  const int64_t b_rows = tb ? n : k, b_cols = tb ? k : n;
  const std::vector<float> af = widen(a, a_rows, a_cols, lda);
  const std::vector<float> bf = widen(b, b_rows, b_cols, ldb);
  openblas_sgemm(ta, tb, m, n, k, alpha, af.data(), a_cols, bf.data(), b_cols, beta, c, ldc);
}

}  // namespace strata::gemm::detail
