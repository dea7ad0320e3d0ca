#pragma once
// Internal: the cache-blocked loop nest shared by our own GEMM kernels (BLIS-style). A cache
// block of op(B) (kc x nc, lives in L3) is packed once by all threads together into nr-wide
// micro-panels; each thread packs its own block of op(A) (mc x kc, lives in L2) into mr-tall
// micro-panels and runs the mr x nr register-blocked micro-kernel over them, so the kernel's
// inner loop reads only contiguous, aligned, L1/L2-resident data. The element type and the
// instruction set live in the three function pointers; this file holds no intrinsics.
#include <cstdint>

namespace strata::gemm::detail {

template <class T>
struct PackedKernel {
  int mr = 0, nr = 0;              // register tile of the micro-kernel
  int64_t mc = 0, kc = 0, nc = 0;  // cache blocks: mc % mr == 0, nc % nr == 0
  // Packs op(A)[i0 : i0+rows, p0 : p0+depth] as ceil(rows/mr) panels, each depth x mr
  // (element (i, p) of a panel at p*mr + i), rows past the end zero-filled.
  void (*pack_a)(const void* a, int64_t lda, bool trans, int64_t i0, int64_t rows, int64_t p0,
                 int64_t depth, T* dst) = nullptr;
  // Packs op(B)[p0 : p0+depth, j0 : j0+cols] (cols <= nr) as one depth x nr panel, zero-filled.
  void (*pack_b)(const void* b, int64_t ldb, bool trans, int64_t p0, int64_t depth, int64_t j0,
                 int64_t cols, T* dst) = nullptr;
  // C[0:rows, 0:cols] = alpha * (A panel x B panel) + beta * C; beta == 0 never reads C.
  void (*micro)(int64_t depth, const T* ap, const T* bp, T alpha, T beta, T* c, int64_t ldc,
                int rows, int cols) = nullptr;
};

// C = alpha * op(A) op(B) + beta * C with m, n, k >= 1. Threads: omp_get_max_threads(), or one
// inside a parallel region; the result does not depend on the thread count because every C
// element is accumulated by the same micro-kernel over the same kc blocks in the same order.
template <class T>
void packed_gemm(const PackedKernel<T>& kernel, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                 T alpha, const void* a, int64_t lda, const void* b, int64_t ldb, T beta, T* c,
                 int64_t ldc);

}  // namespace strata::gemm::detail
