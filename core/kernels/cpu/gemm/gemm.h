#pragma once
// Dense matrix multiply on the CPU, row-major, with a choice of backend:
//   C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C
// op(A) is A (stored m x k, row stride lda) or A^T (A stored k x m, row stride lda); same for B.
// lda/ldb/ldc are row strides in elements. beta == 0 overwrites C without reading it, so C may
// hold garbage or NaN. k == 0 gives C = beta * C. Threads: OpenMP, omp_get_max_threads(); inside
// an OpenMP parallel region every call runs single-threaded. Our own kernel gives results that do
// not depend on the thread count.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/bf16.h"

namespace strata::gemm {

enum class Trans : uint8_t { No, Yes };

// Auto: the backend resolve() picks for this CPU. OpenBlas: cblas. Dnnl: oneDNN. Avx2: our own
// packed AVX2+FMA kernel (needs avx2 and fma at run time).
enum class Kernel : uint8_t { Auto, OpenBlas, Dnnl, Avx2 };

void sgemm(Kernel kernel, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// f64 has no oneDNN GEMM: Kernel::Dnnl runs our own kernel (or OpenBLAS without AVX2).
void dgemm(Kernel kernel, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, double alpha,
           const double* a, int64_t lda, const double* b, int64_t ldb, double beta, double* c,
           int64_t ldc);

// bf16 inputs, f32 accumulation, f32 output (mixed precision).
void bf16gemm(Kernel kernel, Trans ta, Trans tb, int64_t m, int64_t n, int64_t k, float alpha,
              const bf16* a, int64_t lda, const bf16* b, int64_t ldb, float beta, float* c,
              int64_t ldc);

// batch independent problems at a + i*stride_a, b + i*stride_b, c + i*stride_c. Stride 0 reuses
// one matrix for every entry (not allowed for C unless batch <= 1: the entries would race).
// Parallel over the batch when it gives every thread work, else over each problem.
void sgemm_batched(Kernel kernel, Trans ta, Trans tb, int64_t batch, int64_t m, int64_t n,
                   int64_t k, float alpha, const float* a, int64_t lda, int64_t stride_a,
                   const float* b, int64_t ldb, int64_t stride_b, float beta, float* c, int64_t ldc,
                   int64_t stride_c);
void dgemm_batched(Kernel kernel, Trans ta, Trans tb, int64_t batch, int64_t m, int64_t n,
                   int64_t k, double alpha, const double* a, int64_t lda, int64_t stride_a,
                   const double* b, int64_t ldb, int64_t stride_b, double beta, double* c,
                   int64_t ldc, int64_t stride_c);

// Auto -> the backend for this CPU (rule documented in gemm.cpp); others are returned unchanged.
Kernel resolve(Kernel requested);
std::string_view kernel_name(Kernel kernel);
// "auto", "openblas", "dnnl", "avx2"; anything else throws strata::Error listing these.
Kernel parse_kernel(std::string_view name);
// Whether the backend can run on this CPU; requesting an unavailable one throws strata::Error.
bool kernel_available(Kernel kernel);
// Whether oneDNN has an optimised bf16 matmul on this CPU (AVX512-BF16, AVX512 emulation, AMX).
// Without one, bf16gemm under Kernel::Dnnl runs our kernel (or OpenBLAS without AVX2).
bool dnnl_native_bf16();
// The code each dtype's GEMM runs under `kernel` on this CPU, for logs and bench records:
// e.g. "f32 avx2, f64 avx2, bf16 avx2" or "f32 dnnl, f64 avx2, bf16 dnnl(brg:avx512_core_bf16)".
std::string describe(Kernel kernel);

}  // namespace strata::gemm
