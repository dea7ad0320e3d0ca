// Batched matrix products: bf16 and f32 through cuBLASLt, f64 through cuBLAS. The row-major to
// column-major mapping (operand swap, no data moved) is in gemm_layout.h.
//
// Precision. bf16 operands are multiplied with f32 accumulation (CUBLAS_COMPUTE_32F) and the
// output is bf16 or f32; split-K partial sums of a bf16 output are reduced in f32 where cuBLASLt
// offers such an algorithm. f32 uses CUBLAS_COMPUTE_32F without TF32, so results match the CPU's
// f32 GEMM to float rounding; allowing TF32 would be a Runtime setting (not added here).
#include <algorithm>
#include <array>
#include <cstdint>
#include <map>
#include <mutex>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/kernels/cuda/cublas_handle.h"
#include "core/kernels/cuda/cuda_backend.h"
#include "core/kernels/cuda/gemm_layout.h"

namespace strata::cuda {

namespace {

cublasOperation_t blas_op(bool trans) {
  return trans ? CUBLAS_OP_T : CUBLAS_OP_N;
}

cudaDataType_t cuda_type(DType t) {
  switch (t) {
    case DType::f32:
      return CUDA_R_32F;
    case DType::f64:
      return CUDA_R_64F;
    case DType::bf16:
      return CUDA_R_16BF;
    default:
      STRATA_FAIL("matmul: unsupported dtype ", dtype_name(t));
  }
}

// Largest power of two (at most 256, cuBLASLt's default requirement) dividing the address: the
// heuristic must not pick a kernel that assumes more alignment than a view into a buffer has.
uint32_t alignment_of(const void* p) {
  const auto addr = reinterpret_cast<uintptr_t>(p);
  uint32_t a = 256;
  while (a > 1 && addr % a != 0) a /= 2;
  return a;
}

// The column-major problem (gemm_layout.h) with what the call needs besides.
struct Problem {
  int device = 0;
  DType in = DType::f32, out = DType::f32;
  ColumnMajorGemm g;
};

// A cuBLASLt call prepared once per problem shape, layout and alignment.
struct LtPlan {
  bool usable = false;  // false: cuBLASLt has no algorithm; use the cuBLAS fallback
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

using PlanKey = std::array<int64_t, 18>;

PlanKey key_of(const Problem& p) {
  const ColumnMajorGemm& g = p.g;
  return {p.device,
          int64_t(p.in),
          int64_t(p.out),
          g.trans_a,
          g.trans_b,
          g.m,
          g.n,
          g.k,
          g.lda,
          g.ldb,
          g.ldc,
          g.stride_a,
          g.stride_b,
          g.stride_c,
          g.batch,
          alignment_of(g.a),
          alignment_of(g.b),
          alignment_of(g.c)};
}

cublasLtMatrixLayout_t make_layout(DType t, int64_t rows, int64_t cols, int64_t ld, int64_t batch,
                                   int64_t stride) {
  cublasLtMatrixLayout_t layout = nullptr;
  STRATA_CUBLAS_CHECK(
      cublasLtMatrixLayoutCreate(&layout, cuda_type(t), uint64_t(rows), uint64_t(cols), ld));
  const int32_t count = int32_t(batch);
  STRATA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(layout, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT,
                                                       &count, sizeof(count)));
  STRATA_CUBLAS_CHECK(cublasLtMatrixLayoutSetAttribute(
      layout, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof(stride)));
  return layout;
}

template <class V>
void set_pref(cublasLtMatmulPreference_t pref, cublasLtMatmulPreferenceAttributes_t attr,
              const V& value) {
  STRATA_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value)));
}

// Returns false when cuBLASLt has no algorithm for the problem under these preferences.
bool find_algo(const BlasHandles& h, LtPlan& plan, const ColumnMajorGemm& g,
               uint32_t reduction_mask) {
  cublasLtMatmulPreference_t pref = nullptr;
  STRATA_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&pref));
  set_pref(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, uint64_t(h.workspace_bytes));
  set_pref(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, reduction_mask);
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alignment_of(g.a));
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alignment_of(g.b));
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alignment_of(g.c));
  set_pref(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alignment_of(g.c));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h.lt, plan.desc, plan.a, plan.b, plan.c,
                                                           plan.c, pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  // Any refusal (no algorithm, or a layout cuBLASLt does not take, such as one it cannot batch)
  // sends the call to the legacy API, which reports its own error if the problem is invalid.
  if (st != CUBLAS_STATUS_SUCCESS || found == 0) return false;
  plan.algo = result.algo;
  return true;
}

LtPlan make_plan(const BlasHandles& h, const Problem& p) {
  const ColumnMajorGemm& g = p.g;
  LtPlan plan;
  // TF32 stays off for f32 (see the top of the file).
  STRATA_CUBLAS_CHECK(cublasLtMatmulDescCreate(&plan.desc, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const cublasOperation_t ta = blas_op(g.trans_a), tb = blas_op(g.trans_b);
  STRATA_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)));
  STRATA_CUBLAS_CHECK(
      cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)));
  plan.a = make_layout(p.in, g.a_rows(), g.a_cols(), g.lda, g.batch, g.stride_a);
  plan.b = make_layout(p.in, g.b_rows(), g.b_cols(), g.ldb, g.batch, g.stride_b);
  plan.c = make_layout(p.out, g.m, g.n, g.ldc, g.batch, g.stride_c);
  // A bf16 output must not collect split-K partial sums in bf16 (the INPLACE and OUTPUT_TYPE
  // schemes); f32 outputs may use any scheme. If that leaves nothing, take what there is.
  const uint32_t any = CUBLASLT_REDUCTION_SCHEME_MASK;
  const uint32_t strict =
      p.out == DType::bf16 ? uint32_t(CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE) : any;
  plan.usable = find_algo(h, plan, g, strict) || (strict != any && find_algo(h, plan, g, any));
  return plan;
}

// Plans live for the process (they hold only host-side descriptors); the cache grows with the
// number of distinct GEMM shapes a program runs, a few dozen for a transformer.
const LtPlan& plan_for(const BlasHandles& h, const Problem& p) {
  static std::mutex mu;
  static auto* cache = new std::map<PlanKey, LtPlan>();
  const PlanKey key = key_of(p);
  std::lock_guard<std::mutex> lock(mu);
  auto it = cache->find(key);
  if (it == cache->end()) it = cache->emplace(key, make_plan(h, p)).first;
  return it->second;
}

void run_lt(const BlasHandles& h, const Problem& p, double alpha, double beta, cudaStream_t s) {
  const ColumnMajorGemm& g = p.g;
  const float a32 = float(alpha), b32 = float(beta);
  const LtPlan& plan = plan_for(h, p);
  if (plan.usable) {
    STRATA_CUBLAS_CHECK(cublasLtMatmul(h.lt, plan.desc, &a32, g.a, plan.a, g.b, plan.b, &b32, g.c,
                                       plan.c, g.c, plan.c, &plan.algo, h.workspace,
                                       h.workspace_bytes, s));
    return;
  }
  // No cuBLASLt algorithm for this layout (e.g. an unusual alignment): the legacy API covers
  // every layout, at the same precision.
  STRATA_CUBLAS_CHECK(cublasGemmStridedBatchedEx_64(
      h.blas, blas_op(g.trans_a), blas_op(g.trans_b), g.m, g.n, g.k, &a32, g.a, cuda_type(p.in),
      g.lda, g.stride_a, g.b, cuda_type(p.in), g.ldb, g.stride_b, &b32, g.c, cuda_type(p.out),
      g.ldc, g.stride_c, g.batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

void run_f64(const BlasHandles& h, const ColumnMajorGemm& g, double alpha, double beta) {
  STRATA_CUBLAS_CHECK(cublasDgemmStridedBatched_64(
      h.blas, blas_op(g.trans_a), blas_op(g.trans_b), g.m, g.n, g.k, &alpha,
      static_cast<const double*>(g.a), g.lda, g.stride_a, static_cast<const double*>(g.b), g.ldb,
      g.stride_b, &beta, static_cast<double*>(g.c), g.ldc, g.stride_c, g.batch));
}

}  // namespace

void CudaBackend::matmul(const Tensor& a, bool trans_a, const Tensor& b, bool trans_b,
                         const Tensor& out, double alpha, double beta) {
  STRATA_CHECK(a.dim() == 3 && b.dim() == 3 && out.dim() == 3,
               "matmul: backend expects [batch, rows, cols] views");
  const Device dev = out.device();
  STRATA_CHECK(!dev.is_cpu() && a.device() == dev && b.device() == dev, "matmul: operands on ",
               a.device().str(), " and ", b.device().str(), ", output on ", dev.str(),
               "; move them to one CUDA device");
  STRATA_CHECK(a.dtype() == b.dtype(), "matmul: operand dtypes ", dtype_name(a.dtype()), " and ",
               dtype_name(b.dtype()), " differ");
  STRATA_CHECK(out.dtype() == a.dtype() || (a.dtype() == DType::bf16 && out.dtype() == DType::f32),
               "matmul: ", dtype_name(a.dtype()), " operands cannot write a ",
               dtype_name(out.dtype()), " output (expected the same dtype, or f32 for bf16)");
  const int64_t batch = out.shape()[0], m = out.shape()[1], n = out.shape()[2];
  const int64_t k = trans_a ? a.shape()[1] : a.shape()[2];
  STRATA_CHECK(out.strides()[2] == 1 || n == 1, "matmul: output rows must be contiguous");
  STRATA_CHECK(batch <= INT32_MAX, "matmul: batch of ", batch, " exceeds cuBLAS's limit");
  if (batch == 0 || m == 0 || n == 0) return;
  if (k == 0 || alpha == 0) {
    // out = beta * out, without reading the operands (as BLAS and the CPU define alpha == 0);
    // cuBLASLt takes neither case as a GEMM. beta == 0 writes zeros over NaN too.
    if (beta == 0) {
      fill(out, 0.0);
    } else if (beta != 1) {
      Tensor scaled = Tensor::empty(out.shape(), out.dtype(), dev);
      unary(UnaryOp::Affine, out, scaled, UnaryParams{beta, 0.0});
      copy(scaled, out);
    }
    return;
  }
  DeviceGuard guard(dev.index);
  const BlasHandles& h = blas_handles(dev.index);
  Problem p;
  p.device = dev.index;
  p.in = a.dtype();
  p.out = out.dtype();
  p.g = column_major_gemm(a, trans_a, b, trans_b, out);
  if (p.in == DType::f64)
    run_f64(h, p.g, alpha, beta);
  else
    run_lt(h, p, alpha, beta, stream(dev.index));
}

}  // namespace strata::cuda
