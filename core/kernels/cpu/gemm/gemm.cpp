// Argument checks, degenerate cases and backend dispatch for gemm.h.
#include "core/kernels/cpu/gemm/gemm.h"

#include <omp.h>

#include <algorithm>

#include "core/cpu_features.h"
#include "core/error.h"
#include "core/kernels/cpu/gemm/gemm_backends.h"

namespace strata::gemm {
namespace {

bool has_avx2_fma() {
  const CpuFeatures& f = cpu_features();
  return f.avx2 && f.fma;
}

const char* trans_name(Trans t) {
  return t == Trans::No ? "Trans::No" : "Trans::Yes";
}

void check_args(const char* op, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, const void* a,
                int64_t lda, const void* b, int64_t ldb, const void* c, int64_t ldc) {
  STRATA_CHECK(m >= 0, op, ": got m = ", m, ", expected m >= 0");
  STRATA_CHECK(n >= 0, op, ": got n = ", n, ", expected n >= 0");
  STRATA_CHECK(k >= 0, op, ": got k = ", k, ", expected k >= 0");
  // Stored shapes: op(A) is m x k, so A is m x k (No) or k x m (Yes); likewise B.
  const int64_t a_rows = ta == Trans::No ? m : k, a_cols = ta == Trans::No ? k : m;
  const int64_t b_rows = tb == Trans::No ? k : n, b_cols = tb == Trans::No ? n : k;
  STRATA_CHECK(lda >= std::max<int64_t>(a_cols, 1), op, ": got lda = ", lda,
               ", expected lda >= ", std::max<int64_t>(a_cols, 1), " (A is stored ", a_rows, " x ",
               a_cols, ", ", trans_name(ta), ")");
  STRATA_CHECK(ldb >= std::max<int64_t>(b_cols, 1), op, ": got ldb = ", ldb,
               ", expected ldb >= ", std::max<int64_t>(b_cols, 1), " (B is stored ", b_rows, " x ",
               b_cols, ", ", trans_name(tb), ")");
  STRATA_CHECK(ldc >= std::max<int64_t>(n, 1), op, ": got ldc = ", ldc,
               ", expected ldc >= ", std::max<int64_t>(n, 1), " (C is ", m, " x ", n, ")");
  const bool product = m > 0 && n > 0 && k > 0;
  STRATA_CHECK(!product || a != nullptr, op, ": A is null for a ", m, " x ", k, " operand");
  STRATA_CHECK(!product || b != nullptr, op, ": B is null for a ", k, " x ", n, " operand");
  STRATA_CHECK(m == 0 || n == 0 || c != nullptr, op, ": C is null for a ", m, " x ", n, " result");
}

Kernel checked_resolve(const char* op, Kernel requested) {
  const Kernel k = resolve(requested);
  STRATA_CHECK(kernel_available(k), op, ": kernel ", kernel_name(k),
               " is not available on this CPU (features: ", cpu_features_string(),
               "); use kernel auto");
  return k;
}

// C = beta * C, the whole answer when the product is empty (k == 0) or scaled away
// (alpha == 0, which BLAS defines as not reading A and B). beta == 0 writes zeros, NaN or not.
template <class T>
void scale_c(int64_t m, int64_t n, T beta, T* c, int64_t ldc) {
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) {
      std::fill(row, row + n, T(0));
    } else if (beta != T(1)) {
      for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

}  // namespace

// The Auto rule, from cpu_features() alone so that it is fixed per CPU class:
//  * AVX-512 (F+BW+VL): Dnnl. oneDNN JITs AVX-512 GEMM kernels there, and with AVX512-BF16 native
//    bf16 matmul; our kernel is AVX2-only and cannot be tested on AVX-512 in CI.
//  * AVX2+FMA otherwise: Avx2, our own kernel. Measured on the CI class (AMD EPYC Zen 3, 2 cores,
//    see bench/gemm_bench.cpp): f32 GEMM on par with OpenBLAS 0.3.21 at 1 and 2 threads, with
//    results that do not depend on the thread count, and bf16 without an f32 copy of the inputs.
//  * no AVX2: OpenBlas, which carries kernels for older x86.
// dgemm under Dnnl runs our kernel (oneDNN has no f64 GEMM), bf16gemm under Dnnl runs ours
// whenever oneDNN would pick a reference implementation.
Kernel resolve(Kernel requested) {
  if (requested != Kernel::Auto) return requested;
  const CpuFeatures& f = cpu_features();
  if (f.avx512f && f.avx512bw && f.avx512vl) return Kernel::Dnnl;
  if (f.avx2 && f.fma) return Kernel::Avx2;
  return Kernel::OpenBlas;
}

std::string_view kernel_name(Kernel kernel) {
  switch (kernel) {
    case Kernel::Auto:
      return "auto";
    case Kernel::OpenBlas:
      return "openblas";
    case Kernel::Dnnl:
      return "dnnl";
    case Kernel::Avx2:
      return "avx2";
  }
  return "unknown";
}

Kernel parse_kernel(std::string_view name) {
  for (Kernel k : {Kernel::Auto, Kernel::OpenBlas, Kernel::Dnnl, Kernel::Avx2}) {
    if (name == kernel_name(k)) return k;
  }
  STRATA_FAIL("gemm: unknown kernel '", name, "', expected one of: auto, openblas, dnnl, avx2");
}

bool kernel_available(Kernel kernel) {
  switch (kernel) {
    case Kernel::Auto:
    case Kernel::OpenBlas:
    case Kernel::Dnnl:
      return true;  // both carry kernels for every x86-64 CPU
    case Kernel::Avx2:
      return has_avx2_fma();
  }
  return false;
}

bool dnnl_native_bf16() {
  return !detail::dnnl_bf16_impl().empty();
}

std::string describe(Kernel kernel) {
  const Kernel k = resolve(kernel);
  // The fallbacks of dgemm and bf16gemm below, named the same way.
  const std::string ours = has_avx2_fma() ? "avx2" : "openblas";
  std::string f64 = std::string(kernel_name(k)), bf16 = f64;
  if (k == Kernel::Dnnl) {
    f64 = ours;
    bf16 = dnnl_native_bf16() ? "dnnl(" + detail::dnnl_bf16_impl() + ")" : ours;
  }
  return "f32 " + std::string(kernel_name(k)) + ", f64 " + f64 + ", bf16 " + bf16;
}

void sgemm(Kernel kernel, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc) {
  check_args("sgemm", ta, tb, m, n, k, a, lda, b, ldb, c, ldc);
  const Kernel kk = checked_resolve("sgemm", kernel);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) return scale_c(m, n, beta, c, ldc);
  const bool at = ta == Trans::Yes, bt = tb == Trans::Yes;
  switch (kk) {
    case Kernel::Avx2:
      return detail::avx2_sgemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    case Kernel::Dnnl:
      return detail::dnnl_sgemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    default:
      return detail::openblas_sgemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
}

void dgemm(Kernel kernel, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha,
           const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
           int64_t ldc) {
  check_args("dgemm", ta, tb, m, n, k, a, lda, b, ldb, c, ldc);
  const Kernel kk = checked_resolve("dgemm", kernel);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0) return scale_c(m, n, beta, c, ldc);
  const bool at = ta == Trans::Yes, bt = tb == Trans::Yes;
  // oneDNN has no f64 GEMM: Dnnl means our kernel where it runs, OpenBLAS elsewhere.
  if (kk == Kernel::Avx2 || (kk == Kernel::Dnnl && has_avx2_fma())) {
    return detail::avx2_dgemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  detail::openblas_dgemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

void bf16gemm(Kernel kernel, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha,
              const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, float* c,
              int64_t ldc) {
  check_args("bf16gemm", ta, tb, m, n, k, a, lda, b, ldb, c, ldc);
  const Kernel kk = checked_resolve("bf16gemm", kernel);
  if (m == 0 || n == 0) return;
  if (k == 0 || alpha == 0.0f) return scale_c(m, n, beta, c, ldc);
  const bool at = ta == Trans::Yes, bt = tb == Trans::Yes;
  if (kk == Kernel::Dnnl &&
      detail::dnnl_bf16gemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) {
    return;
  }
  if (kk == Kernel::Avx2 || (kk == Kernel::Dnnl && has_avx2_fma())) {
    return detail::avx2_bf16gemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  }
  detail::openblas_bf16gemm(at, bt, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

namespace {

template <class T, class Gemm>
void batched(const char* op, Gemm gemm, Kernel kernel, Trans ta, Trans tb, int64_t batch, int64_t m,
             int64_t n, int64_t k, T alpha, const T* a, int64_t lda, int64_t stride_a, const T* b,
             int64_t ldb, int64_t stride_b, T beta, T* c, int64_t ldc, int64_t stride_c) {
  STRATA_CHECK(batch >= 0, op, ": got batch = ", batch, ", expected batch >= 0");
  STRATA_CHECK(stride_a >= 0 && stride_b >= 0 && stride_c >= 0, op, ": got strides (", stride_a,
               ", ", stride_b, ", ", stride_c, "), expected all >= 0");
  STRATA_CHECK(batch <= 1 || stride_c > 0 || m == 0 || n == 0, op,
               ": got stride_c = 0 with batch = ", batch,
               ", expected stride_c > 0 (entries would overwrite one C)");
  check_args(op, ta, tb, m, n, k, a, lda, b, ldb, c, ldc);
  const Kernel kk = checked_resolve(op, kernel);
  if (batch == 0) return;
  const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
  // Across the batch when that keeps every thread equally busy (a multiple of the thread count,
  // or enough entries that the remainder is small); each entry then runs single-threaded.
  // Otherwise entry by entry, each using all threads. OpenBLAS calls always go one by one: its
  // own pool would oversubscribe the cores under an OpenMP team.
  const bool across =
      threads > 1 && kk != Kernel::OpenBlas && (batch % threads == 0 || batch >= 4 * threads);
  const auto entry = [&](int64_t i) {
    gemm(kk, ta, tb, m, n, k, alpha, a + i * stride_a, lda, b + i * stride_b, ldb, beta,
         c + i * stride_c, ldc);
  };
  if (!across) {
    // Not `omp parallel if (false)`: inside that inactive region each entry's own parallel
    // region is a nested one, and libgomp starts and joins fresh threads for every nested team
    // instead of reusing its pool (one thread created and destroyed per GEMM call).
    for (int64_t i = 0; i < batch; ++i) entry(i);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < batch; ++i) entry(i);
}

}  // namespace

void sgemm_batched(Kernel kernel, Trans ta, Trans tb, int64_t batch, int64_t m, int64_t n,
                   int64_t k, float alpha, const float* a, int64_t lda, int64_t stride_a,
                   const float* b, int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc,
                   int64_t stride_c) {
  batched<float>("sgemm_batched", sgemm, kernel, ta, tb, batch, m, n, k, alpha, a, lda, stride_a, b,
                 ldb, stride_b, beta, c, ldc, stride_c);
}

void dgemm_batched(Kernel kernel, Trans ta, Trans tb, int64_t batch, int64_t m, int64_t n,
                   int64_t k, double alpha, const double* a, int64_t lda, int64_t stride_a,
                   const double* b, int64_t ldb, int64_t stride_b, double beta, double* c,
                   int64_t ldc, int64_t stride_c) {
  batched<double>("dgemm_batched", dgemm, kernel, ta, tb, batch, m, n, k, alpha, a, lda, stride_a,
                  b, ldb, stride_b, beta, c, ldc, stride_c);
}

}  // namespace strata::gemm
