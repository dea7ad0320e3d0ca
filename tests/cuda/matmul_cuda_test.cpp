// CudaBackend::matmul (cuBLASLt / cuBLAS) against CpuBackend::matmul on the same operands and
// layouts: transposes by flag and by strides, broadcast batches (batch stride 0), alpha/beta,
// padded outputs, copied (non-unit stride) and misaligned operands, k = 0, bf16 with an f32 output.
//
// Tolerance: |gpu - cpu| <= rtol_out * |cpu| + atol * bound, where bound = |alpha| |A| |B| +
// |beta| |C0| per element (the size the rounding errors of a dot product scale with). f64:
// atol 1e-12; f32 (no TF32): 1e-5; bf16 operands with f32 accumulation: 1e-5, plus rtol_out 2^-7
// for a bf16 output (both sides round to bf16 once and may land one ulp apart).
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "core/backend.h"
#include "core/tensor.h"
#include "tests/cuda/backend_compare_util.h"

namespace strata::cuda_test {
namespace {

enum class Layout : uint8_t {
  RowMajor,    // contiguous [batch, rows, cols]
  Transposed,  // a transposed view of a contiguous [batch, cols, rows]
  Strided,     // every other column of [batch, rows, 2 * cols]: neither layout, copied
  Misaligned,  // row-major starting one element into its buffer
};

struct Operand {
  Tensor base;  // host buffer
  Tensor view;  // host view [batch, rows, cols] into base
};

Operand make_operand(int64_t batch, int64_t rows, int64_t cols, Layout layout, bool broadcast,
                     DType dtype, uint64_t seed) {
  const int64_t nb = broadcast ? 1 : batch;
  Operand op;
  switch (layout) {
    case Layout::RowMajor:
      op.base = host_randn({nb, rows, cols}, dtype, seed);
      op.view = make_view(op.base, {batch, rows, cols}, {broadcast ? 0 : rows * cols, cols, 1}, 0);
      break;
    case Layout::Transposed:
      op.base = host_randn({nb, cols, rows}, dtype, seed);
      op.view = make_view(op.base, {batch, rows, cols}, {broadcast ? 0 : rows * cols, 1, rows}, 0);
      break;
    case Layout::Strided:
      op.base = host_randn({nb, rows, 2 * cols}, dtype, seed);
      op.view = make_view(op.base, {batch, rows, cols},
                          {broadcast ? 0 : rows * 2 * cols, 2 * cols, 2}, 0);
      break;
    case Layout::Misaligned:
      op.base = host_randn({nb * rows * cols + 1}, dtype, seed);
      op.view = make_view(op.base, {batch, rows, cols}, {broadcast ? 0 : rows * cols, cols, 1}, 1);
      break;
  }
  return op;
}

struct Case {
  std::string name;
  int64_t batch, m, n, k;
  bool trans_a = false, trans_b = false;
  Layout la = Layout::RowMajor, lb = Layout::RowMajor;
  bool bcast_a = false, bcast_b = false;
  int64_t pad = 0;  // output leading dimension n + pad
  double alpha = 1.0, beta = 0.0;
};

// |x| of a host view as a contiguous f64 tensor.
Tensor abs_f64(const Tensor& v) {
  Tensor c = v.to(DType::f64).clone();
  double* p = c.data<double>();
  for (int64_t i = 0; i < c.numel(); ++i) p[i] = std::abs(p[i]);
  return c;
}

void run_case(const Case& c, DType in, DType out_dtype) {
  SCOPED_TRACE(c.name + " " + std::string(dtype_name(in)) + "->" +
               std::string(dtype_name(out_dtype)));
  const int64_t ar = c.trans_a ? c.k : c.m, ac = c.trans_a ? c.m : c.k;
  const int64_t br = c.trans_b ? c.n : c.k, bc = c.trans_b ? c.k : c.n;
  const Operand a = make_operand(c.batch, ar, ac, c.la, c.bcast_a, in, 11);
  const Operand b = make_operand(c.batch, br, bc, c.lb, c.bcast_b, in, 12);
  const int64_t ldc = c.n + c.pad;
  const Tensor out_base0 = host_randn({c.batch, c.m, ldc}, out_dtype, 13);
  const Tensor out_like = make_view(out_base0, {c.batch, c.m, c.n}, {c.m * ldc, ldc, 1}, 0);

  // CPU reference. Its matmul reads operands in the output dtype, so bf16 operands of an f32
  // output are widened first (exactly).
  Tensor cpu_out = out_base0.clone();
  const Tensor cpu_a = in == out_dtype ? a.view : a.view.to(out_dtype);
  const Tensor cpu_b = in == out_dtype ? b.view : b.view.to(out_dtype);
  cpu_backend().matmul(cpu_a, c.trans_a, cpu_b, c.trans_b, same_view(cpu_out, out_like), c.alpha,
                       c.beta);

  const Tensor ga = upload(a.base), gb = upload(b.base), gout = upload(out_base0);
  gpu_backend().matmul(same_view(ga, a.view), c.trans_a, same_view(gb, b.view), c.trans_b,
                       same_view(gout, out_like), c.alpha, c.beta);
  const Tensor got = download(gout);

  // Error bound per element.
  Tensor bound = Tensor::empty({c.batch, c.m, c.n}, DType::f64);
  cpu_backend().matmul(abs_f64(a.view), c.trans_a, abs_f64(b.view), c.trans_b, bound,
                       std::abs(c.alpha), 0.0);
  const std::vector<double> c0 = values(out_like), bnd = bound.to_vector<double>();
  const std::vector<double> g = values(same_view(got, out_like)),
                            r = values(same_view(cpu_out, out_like));
  const double atol = in == DType::f64 ? 1e-12 : 1e-5;
  const double rtol = out_dtype == DType::bf16 ? 1.0 / 128 : 0.0;
  int bad = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    const double lim = rtol * std::abs(r[i]) + atol * (bnd[i] + std::abs(c.beta * c0[i])) + 1e-30;
    if (!(std::abs(g[i] - r[i]) <= lim) && ++bad <= 5)
      ADD_FAILURE() << "element " << i << ": gpu " << g[i] << ", cpu " << r[i] << ", limit " << lim;
  }
  EXPECT_EQ(bad, 0) << bad << " of " << g.size() << " elements differ";

  // The padding columns of the output stay untouched.
  if (c.pad > 0) {
    const Tensor pad_like = make_view(out_base0, {c.batch, c.m, c.pad}, {c.m * ldc, ldc, 1}, c.n);
    EXPECT_EQ(values(same_view(got, pad_like)), values(pad_like));
  }
}

std::vector<Case> cases() {
  std::vector<Case> v;
  // Plain products over sizes that hit edge tiles.
  v.push_back({"1x1x1", 1, 1, 1, 1});
  v.push_back({"3x5x7", 1, 3, 5, 7});
  v.push_back({"batch2 17x33x65", 2, 17, 33, 65});
  v.push_back({"batch3 64x48x128", 3, 64, 48, 128});
  v.push_back({"257x129x300", 1, 257, 129, 300});
  // Transposes by flag, by strides, and both (which cancel).
  for (int ta = 0; ta < 2; ++ta)
    for (int tb = 0; tb < 2; ++tb) {
      Case c{"flags ta=" + std::to_string(ta) + " tb=" + std::to_string(tb), 2, 31, 45, 70};
      c.trans_a = ta;
      c.trans_b = tb;
      v.push_back(c);
      Case s = c;
      s.name = "strides+" + c.name;
      s.la = Layout::Transposed;
      s.lb = Layout::Transposed;
      v.push_back(s);
    }
  // Broadcast batches: a weight shared by every batch entry, and the other way round.
  {
    Case c{"broadcast b", 4, 40, 24, 56};
    c.bcast_b = true;
    v.push_back(c);
    Case d{"broadcast a transposed", 3, 20, 36, 44};
    d.bcast_a = true;
    d.trans_a = true;
    v.push_back(d);
    Case e{"broadcast both", 2, 8, 8, 8};
    e.bcast_a = e.bcast_b = true;
    v.push_back(e);
  }
  // alpha / beta with a padded output.
  {
    Case c{"alpha beta padded", 2, 33, 50, 64};
    c.alpha = 1.5;
    c.beta = -0.5;
    c.pad = 7;
    v.push_back(c);
    Case d{"beta only", 1, 16, 16, 16};
    d.beta = 1.0;
    v.push_back(d);
  }
  // Operands that are copied first, or start off alignment.
  {
    Case c{"strided operands", 2, 19, 23, 29};
    c.la = Layout::Strided;
    c.lb = Layout::Strided;
    v.push_back(c);
    Case d{"misaligned operands", 2, 24, 40, 72};
    d.la = Layout::Misaligned;
    d.lb = Layout::Misaligned;
    d.trans_b = true;
    v.push_back(d);
  }
  // An empty inner dimension: out = beta * out.
  {
    Case c{"k=0 beta=0", 2, 5, 6, 0};
    v.push_back(c);
    Case d{"k=0 beta=0.5", 2, 5, 6, 0};
    d.beta = 0.5;
    v.push_back(d);
    Case e{"alpha=0 beta=2", 2, 5, 6, 9};
    e.alpha = 0.0;
    e.beta = 2.0;
    v.push_back(e);
  }
  // The shape of a linear layer's forward (x @ W^T, W broadcast) at a realistic size.
  {
    Case c{"linear 512x768x1024", 1, 512, 1024, 768};
    c.trans_b = true;
    v.push_back(c);
  }
  return v;
}

TEST(MatmulCuda, F32MatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (const Case& c : cases()) run_case(c, DType::f32, DType::f32);
}

TEST(MatmulCuda, F64MatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (const Case& c : cases()) run_case(c, DType::f64, DType::f64);
}

TEST(MatmulCuda, Bf16MatchesCpu) {
  STRATA_SKIP_WITHOUT_GPU();
  for (const Case& c : cases()) run_case(c, DType::bf16, DType::bf16);
}

TEST(MatmulCuda, Bf16OperandsF32Output) {
  STRATA_SKIP_WITHOUT_GPU();
  for (const Case& c : cases()) run_case(c, DType::bf16, DType::f32);
}

// Repeated calls reuse the cached plan and give the same bits.
TEST(MatmulCuda, RepeatedCallsAreBitwiseEqual) {
  STRATA_SKIP_WITHOUT_GPU();
  const Tensor a = upload(host_randn({1, 300, 500}, DType::bf16, 1));
  const Tensor b = upload(host_randn({1, 500, 700}, DType::bf16, 2));
  Tensor o1 = Tensor::empty({1, 300, 700}, DType::bf16, gpu());
  Tensor o2 = Tensor::empty({1, 300, 700}, DType::bf16, gpu());
  gpu_backend().matmul(a, false, b, false, o1, 1.0, 0.0);
  gpu_backend().matmul(a, false, b, false, o2, 1.0, 0.0);
  EXPECT_EQ(values(download(o1)), values(download(o2)));
}

TEST(MatmulCuda, RejectsMixedDtypes) {
  STRATA_SKIP_WITHOUT_GPU();
  const Tensor a = upload(host_randn({1, 4, 4}, DType::f32, 1));
  const Tensor b = upload(host_randn({1, 4, 4}, DType::bf16, 2));
  Tensor o = Tensor::empty({1, 4, 4}, DType::f32, gpu());
  EXPECT_THROW(gpu_backend().matmul(a, false, b, false, o, 1.0, 0.0), Error);
  Tensor o64 = Tensor::empty({1, 4, 4}, DType::f64, gpu());
  EXPECT_THROW(gpu_backend().matmul(a, false, a, false, o64, 1.0, 0.0), Error);
}

}  // namespace
}  // namespace strata::cuda_test
