// Batched matrix products through the GEMM backend (core/kernels/cpu/gemm/). Operand layouts are
// read from strides: a row-major or a transposed (column-major) matrix goes to GEMM as is; only
// a matrix that is neither is copied.
#include <vector>

#include "core/kernels/cpu/cpu_backend.h"
#include "core/kernels/cpu/gemm/gemm.h"
#include "core/runtime.h"

namespace strata::cpu {

namespace {

// A [batch, rows, cols] operand as GEMM sees it.
struct GemmOperand {
  Tensor keep;  // owns a copy when one was needed
  const void* data = nullptr;
  gemm::Trans trans = gemm::Trans::No;
  int64_t ld = 0, batch_stride = 0;
};

GemmOperand as_operand(const Tensor& t, bool transposed) {
  const int64_t r = t.shape()[1], c = t.shape()[2];
  int64_t sr = t.strides()[1], sc = t.strides()[2];
  // A stride along a dim of size 1 is never stepped: normalise it so the layout tests below hold.
  if (c == 1) sc = 1;
  if (r == 1) sr = std::max<int64_t>(c, 1);
  GemmOperand op;
  op.batch_stride = t.shape()[0] == 1 ? 0 : t.strides()[0];
  if (sc == 1 && sr >= std::max<int64_t>(c, 1)) {
    op.trans = gemm::Trans::No;
    op.ld = std::max<int64_t>(sr, 1);
    op.data = t.raw_data();
  } else if (sr == 1 && sc >= std::max<int64_t>(r, 1)) {
    op.trans = gemm::Trans::Yes;
    op.ld = sc;
    op.data = t.raw_data();
  } else {
    op.keep = t.contiguous();
    op.trans = gemm::Trans::No;
    op.ld = std::max<int64_t>(c, 1);
    op.batch_stride = t.shape()[0] == 1 ? 0 : r * c;
    op.data = op.keep.raw_data();
  }
  if (transposed) op.trans = op.trans == gemm::Trans::No ? gemm::Trans::Yes : gemm::Trans::No;
  return op;
}

}  // namespace

void CpuBackend::matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                        const Tensor& out, double alpha, double beta) {
  const int64_t batch = out.shape()[0], m = out.shape()[1], n = out.shape()[2];
  const int64_t k = trans_a ? a.shape()[1] : a.shape()[2];
  STRATA_CHECK(out.strides()[2] == 1 || n == 1, "matmul: output rows must be contiguous");
  const GemmOperand A = as_operand(a, trans_a), B = as_operand(b, trans_b);
  const int64_t ldc = m > 1 ? out.strides()[1] : std::max<int64_t>(n, 1);
  const int64_t stride_c = batch > 1 ? out.strides()[0] : 0;
  const gemm::Kernel kernel = Runtime::get().gemm_kernel();
  switch (out.dtype()) {
    case DType::f32:
      gemm::sgemm_batched(kernel, A.trans, B.trans, batch, m, n, k, float(alpha),
                          static_cast<const float*>(A.data), A.ld, A.batch_stride,
                          static_cast<const float*>(B.data), B.ld, B.batch_stride, float(beta),
                          static_cast<float*>(out.raw_data()), ldc, stride_c);
      break;
    case DType::f64:
      gemm::dgemm_batched(kernel, A.trans, B.trans, batch, m, n, k, alpha,
                          static_cast<const double*>(A.data), A.ld, A.batch_stride,
                          static_cast<const double*>(B.data), B.ld, B.batch_stride, beta,
                          static_cast<double*>(out.raw_data()), ldc, stride_c);
      break;
    case DType::bf16: {
      // bf16 operands, f32 accumulation; the result is rounded to bf16 once at the end.
      Tensor acc = Tensor::empty({m, n}, DType::f32);
      for (int64_t i = 0; i < batch; ++i) {
        Tensor oi = make_view(out, {m, n}, {ldc, 1}, out.offset() + i * stride_c);
        if (beta != 0) copy(oi, acc);
        gemm::bf16gemm(kernel, A.trans, B.trans, m, n, k, float(alpha),
                       static_cast<const bf16*>(A.data) + i * A.batch_stride, A.ld,
                       static_cast<const bf16*>(B.data) + i * B.batch_stride, B.ld, float(beta),
                       acc.data<float>(), n);
        copy(acc, oi);
      }
      break;
    }
    default:
      STRATA_FAIL("matmul: unsupported dtype ", dtype_name(out.dtype()));
  }
}

}  // namespace strata::cpu
