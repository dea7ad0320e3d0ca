#pragma once
// Internal: the backends behind gemm.h. gemm.cpp validates arguments and handles the degenerate
// cases (m == 0, n == 0, k == 0, alpha == 0) first, so every function here gets m, n, k >= 1 and
// leading dimensions that fit the matrices.
#include <cstdint>
#include <string>

#include "core/bf16.h"

namespace strata::gemm::detail {

// cblas. OpenBLAS owns its threads; the bf16 variant converts the inputs to f32 first.
void openblas_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                    int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void openblas_dgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                    const double* a, int64_t lda, const double* b, int64_t ldb, double beta,
                    double* c, int64_t ldc);
void openblas_bf16gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha,
                       const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, float* c,
                       int64_t ldc);

// oneDNN. dnnl_bf16gemm returns false, touching nothing, when oneDNN has no optimised
// implementation for the problem on this CPU; the caller then uses another backend.
void dnnl_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
// oneDNN's implementation of a representative bf16 matmul on this CPU ("brg:avx512_core_bf16"),
// or "" when it has only a reference one. Decided once.
const std::string& dnnl_bf16_impl();
bool dnnl_bf16gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a,
                   int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc);

// Our packed AVX2+FMA kernels; callers check cpu_features() first.
void avx2_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                int64_t lda, const float* b, int64_t ldb, float beta, float* c, int64_t ldc);
void avx2_bf16gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const bf16* a,
                   int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc);
void avx2_dgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const double* a,
                int64_t lda, const double* b, int64_t ldb, double beta, double* c, int64_t ldc);

}  // namespace strata::gemm::detail
