// Our own f64 GEMM (gradient checks, references): the f32 design with a 6x8 tile of doubles
// (12 ymm accumulators). f64 is not on the training hot path, so packing is plain C++ and the
// micro-kernel plain intrinsics.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "core/kernels/cpu/gemm/gemm_backends.h"
#include "core/kernels/cpu/gemm/gemm_packed.h"

#define STRATA_AVX2 __attribute__((target("avx2,fma")))

namespace strata::gemm::detail {
namespace {

constexpr int kMr = 6;
constexpr int kNr = 8;
// Same byte footprints as the f32 kernel: B micro-panel 256 x 8 x 8 B = 16 KiB in L1, A block
// 72 x 256 x 8 B = 144 KiB in L2.
constexpr int64_t kMc = 72;
constexpr int64_t kKc = 256;
constexpr int64_t kNc = 4080;

STRATA_AVX2 void pack_a(const void* a_raw, int64_t lda, bool trans, int64_t i0, int64_t rows,
                        int64_t p0, int64_t depth, double* dst) {
  const double* a = static_cast<const double*>(a_raw);
  for (int64_t r0 = 0; r0 < rows; r0 += kMr, dst += kMr * depth) {
    const int h = int(std::min<int64_t>(kMr, rows - r0));
    for (int64_t p = 0; p < depth; ++p) {
      double* d = dst + p * kMr;
      for (int i = 0; i < kMr; ++i) {
        const int64_t row = i0 + r0 + i, col = p0 + p;
        d[i] = i >= h ? 0.0 : trans ? a[col * lda + row] : a[row * lda + col];
      }
    }
  }
}

STRATA_AVX2 void pack_b(const void* b_raw, int64_t ldb, bool trans, int64_t p0, int64_t depth,
                        int64_t j0, int64_t cols, double* dst) {
  const double* b = static_cast<const double*>(b_raw);
  for (int64_t p = 0; p < depth; ++p) {
    double* d = dst + p * kNr;
    for (int j = 0; j < kNr; ++j) {
      const int64_t row = p0 + p, col = j0 + j;
      d[j] = j >= cols ? 0.0 : trans ? b[col * ldb + row] : b[row * ldb + col];
    }
  }
}

STRATA_AVX2 void micro_6x8(int64_t depth, const double* ap, const double* bp, double alpha,
                           double beta, double* c, int64_t ldc, int rows, int cols) {
  __m256d acc[kMr][2];
  for (int i = 0; i < kMr; ++i) acc[i][0] = acc[i][1] = _mm256_setzero_pd();
  for (int64_t p = 0; p < depth; ++p, ap += kMr, bp += kNr) {
    const __m256d b0 = _mm256_load_pd(bp), b1 = _mm256_load_pd(bp + 4);
    for (int i = 0; i < kMr; ++i) {
      const __m256d av = _mm256_broadcast_sd(ap + i);
      acc[i][0] = _mm256_fmadd_pd(av, b0, acc[i][0]);
      acc[i][1] = _mm256_fmadd_pd(av, b1, acc[i][1]);
    }
  }
  alignas(32) double sums[kMr][kNr];
  for (int i = 0; i < kMr; ++i) {
    _mm256_store_pd(sums[i], acc[i][0]);
    _mm256_store_pd(sums[i] + 4, acc[i][1]);
  }
  for (int i = 0; i < rows; ++i) {
    double* ci = c + i * ldc;
    if (beta == 0.0) {
      for (int j = 0; j < cols; ++j) ci[j] = alpha * sums[i][j];
    } else {
      for (int j = 0; j < cols; ++j) ci[j] = std::fma(alpha, sums[i][j], beta * ci[j]);
    }
  }
}

}  // namespace

void avx2_dgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc) {
  static const PackedKernel<double> kernel{kMr, kNr, kMc, kKc, kNc, &pack_a, &pack_b, &micro_6x8};
  packed_gemm(kernel, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

}  // namespace strata::gemm::detail
