#pragma once
// How a row-major batched product out[b] = op(a[b]) op(b[b]) (Backend::matmul's [batch, rows,
// cols] views) is handed to a column-major BLAS (cuBLAS, cuBLASLt) without moving data.
//
// A row-major r x c matrix with leading dimension ld is, byte for byte, the column-major c x r
// matrix with the same ld. So the product is computed as its transpose, C^T = op(B)^T op(A)^T:
// our B becomes BLAS's first operand, our A its second, and m and n swap. (The alternative,
// CUBLASLT_ORDER_ROW layouts, is served by fewer cuBLASLt kernels and does not exist in the
// legacy API that the f64 path uses.)
//
// Operand layouts are read from strides as on the CPU (cpu_matmul.cpp): a row-major or a
// transposed matrix goes in as is; only one that is neither is copied (Tensor::contiguous).
// Host code only, so the mapping is tested on machines without a GPU
// (tests/core/cuda_gemm_layout_test.cpp).
#include <algorithm>
#include <cstdint>

#include "core/tensor.h"

namespace strata::cuda {

// A [batch, rows, cols] operand in row-major terms: `trans` is false when memory holds the
// operand (after the caller's transpose flag) row-major, true when it holds its transpose.
struct GemmOperand {
  Tensor keep;  // owns a copy when one was needed
  const void* data = nullptr;
  bool trans = false;
  int64_t ld = 0, batch_stride = 0;
};

inline GemmOperand gemm_operand(const Tensor& t, bool transposed) {
  const int64_t r = t.shape()[1], c = t.shape()[2];
  int64_t sr = t.strides()[1], sc = t.strides()[2];
  // A stride along a dim of size 1 is never stepped: normalise it so the layout tests below hold.
  if (c == 1) sc = 1;
  if (r == 1) sr = std::max<int64_t>(c, 1);
  GemmOperand op;
  op.batch_stride = t.shape()[0] == 1 ? 0 : t.strides()[0];
  if (sc == 1 && sr >= std::max<int64_t>(c, 1)) {
    op.ld = std::max<int64_t>(sr, 1);
    op.data = t.raw_data();
  } else if (sr == 1 && sc >= std::max<int64_t>(r, 1)) {
    op.trans = true;
    op.ld = sc;
    op.data = t.raw_data();
  } else {
    op.keep = t.contiguous();
    op.ld = std::max<int64_t>(c, 1);
    op.batch_stride = t.shape()[0] == 1 ? 0 : r * c;
    op.data = op.keep.raw_data();
  }
  if (transposed) op.trans = !op.trans;
  return op;
}

// The column-major strided-batched problem C = alpha op(A) op(B) + beta C in BLAS's own terms:
// op(A) is m x k, op(B) is k x n, C is m x n; a trans flag means BLAS's OP_T.
struct ColumnMajorGemm {
  bool trans_a = false, trans_b = false;
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  int64_t stride_a = 0, stride_b = 0, stride_c = 0;
  int64_t batch = 0;
  const void* a = nullptr;
  const void* b = nullptr;
  void* c = nullptr;
  // Stored (pre-op) shapes, as cuBLASLt's matrix layouts want them.
  int64_t a_rows() const { return trans_a ? k : m; }
  int64_t a_cols() const { return trans_a ? m : k; }
  int64_t b_rows() const { return trans_b ? n : k; }
  int64_t b_cols() const { return trans_b ? k : n; }
  GemmOperand hold_a, hold_b;  // keep copied operands alive until the call is queued
};

// out ([batch, M, N], rows contiguous) = op(a) op(b) as C^T (N x M) = op(B)^T (N x K) op(A)^T.
inline ColumnMajorGemm column_major_gemm(const Tensor& a, bool trans_a, const Tensor& b,
                                         bool trans_b, const Tensor& out) {
  const int64_t batch = out.shape()[0], m = out.shape()[1], n = out.shape()[2];
  ColumnMajorGemm g;
  g.hold_a = gemm_operand(a, trans_a);
  g.hold_b = gemm_operand(b, trans_b);
  // Memory holding op(B) row-major is op(B)^T column-major: no BLAS transpose needed; memory
  // holding op(B)^T row-major is op(B) column-major: BLAS transposes it. Same for A.
  g.trans_a = g.hold_b.trans;
  g.trans_b = g.hold_a.trans;
  g.m = n;
  g.n = m;
  g.k = trans_a ? a.shape()[1] : a.shape()[2];
  g.a = g.hold_b.data;
  g.lda = g.hold_b.ld;
  g.stride_a = g.hold_b.batch_stride;
  g.b = g.hold_a.data;
  g.ldb = g.hold_a.ld;
  g.stride_b = g.hold_a.batch_stride;
  g.c = out.raw_data();
  g.ldc = m > 1 ? out.strides()[1] : std::max<int64_t>(n, 1);
  g.stride_c = batch > 1 ? out.strides()[0] : 0;
  g.batch = batch;
  return g;
}

}  // namespace strata::cuda
