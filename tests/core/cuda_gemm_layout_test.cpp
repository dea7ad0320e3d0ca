// The row-major -> column-major GEMM mapping of the CUDA matmul (core/kernels/cuda/gemm_layout.h),
// checked without a GPU: the mapped problem is run by a naive column-major strided-batched GEMM
// with BLAS's semantics (what cuBLAS computes) on host memory and compared with a direct
// row-major product, over transposes by flag and by strides, broadcast batches, padded outputs,
// copied and offset operands and degenerate sizes. f64 throughout, so any slip in a leading
// dimension, a stride or a transpose shows as a large error, not as rounding.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "core/kernels/cuda/gemm_layout.h"
#include "core/ops/factory.h"
#include "core/tensor.h"

namespace strata::cuda {
namespace {

enum class Layout : uint8_t { RowMajor, Transposed, Strided, Offset, RowPadded };

Tensor random_f64(const Shape& shape, uint64_t seed) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> dist(0.0, 1.0);
  std::vector<double> v(size_t(numel(shape)));
  for (double& x : v) x = dist(gen);
  return from_vector(v, shape);
}

// A host view [batch, rows, cols] in the given layout (batch stride 0 when broadcast).
Tensor make_operand(int64_t batch, int64_t rows, int64_t cols, Layout layout, bool broadcast,
                    uint64_t seed) {
  const int64_t nb = broadcast ? 1 : batch;
  switch (layout) {
    case Layout::RowMajor:
      return make_view(random_f64({nb, rows, cols}, seed), {batch, rows, cols},
                       {broadcast ? 0 : rows * cols, cols, 1}, 0);
    case Layout::Transposed:
      return make_view(random_f64({nb, cols, rows}, seed), {batch, rows, cols},
                       {broadcast ? 0 : rows * cols, 1, rows}, 0);
    case Layout::Strided:
      return make_view(random_f64({nb, rows, 2 * cols}, seed), {batch, rows, cols},
                       {broadcast ? 0 : rows * 2 * cols, 2 * cols, 2}, 0);
    case Layout::Offset:
      return make_view(random_f64({nb * rows * cols + 3}, seed), {batch, rows, cols},
                       {broadcast ? 0 : rows * cols, cols, 1}, 3);
    case Layout::RowPadded:  // rows further apart than cols (a column slice of a wider matrix)
      return make_view(random_f64({nb, rows, cols + 5}, seed), {batch, rows, cols},
                       {broadcast ? 0 : rows * (cols + 5), cols + 5, 1}, 0);
  }
  return {};
}

// C = alpha op(A) op(B) + beta C, column-major, strided batches: BLAS's definition.
void blas_reference(const ColumnMajorGemm& g, double alpha, double beta) {
  const auto* A = static_cast<const double*>(g.a);
  const auto* B = static_cast<const double*>(g.b);
  auto* C = static_cast<double*>(g.c);
  for (int64_t bt = 0; bt < g.batch; ++bt)
    for (int64_t j = 0; j < g.n; ++j)
      for (int64_t i = 0; i < g.m; ++i) {
        double s = 0;
        for (int64_t l = 0; l < g.k; ++l) {
          const double av =
              g.trans_a ? A[bt * g.stride_a + l + i * g.lda] : A[bt * g.stride_a + i + l * g.lda];
          const double bv =
              g.trans_b ? B[bt * g.stride_b + j + l * g.ldb] : B[bt * g.stride_b + l + j * g.ldb];
          s += av * bv;
        }
        double& c = C[bt * g.stride_c + i + j * g.ldc];
        c = alpha * s + (beta == 0 ? 0.0 : beta * c);
      }
}

struct Case {
  std::string name;
  int64_t batch, m, n, k;
  bool ta = false, tb = false;
  Layout la = Layout::RowMajor, lb = Layout::RowMajor;
  bool bcast_a = false, bcast_b = false;
  int64_t pad = 0;
};

void run(const Case& c) {
  SCOPED_TRACE(c.name);
  const double alpha = 1.25, beta = -0.5;
  const int64_t ar = c.ta ? c.k : c.m, ac = c.ta ? c.m : c.k;
  const int64_t br = c.tb ? c.n : c.k, bc = c.tb ? c.k : c.n;
  const Tensor a = make_operand(c.batch, ar, ac, c.la, c.bcast_a, 1);
  const Tensor b = make_operand(c.batch, br, bc, c.lb, c.bcast_b, 2);
  const int64_t ldc = c.n + c.pad;
  const Tensor out_base = random_f64({c.batch, c.m, ldc}, 3);
  const std::vector<double> c0 = out_base.to_vector<double>();
  const Tensor out = make_view(out_base, {c.batch, c.m, c.n}, {c.m * ldc, ldc, 1}, 0);

  const ColumnMajorGemm g = column_major_gemm(a, c.ta, b, c.tb, out);
  // What cuBLAS requires of the arguments.
  EXPECT_EQ(g.m, c.n);
  EXPECT_EQ(g.n, c.m);
  EXPECT_EQ(g.k, c.k);
  EXPECT_EQ(g.batch, c.batch);
  EXPECT_GE(g.lda, std::max<int64_t>(1, g.a_rows()));
  EXPECT_GE(g.ldb, std::max<int64_t>(1, g.b_rows()));
  EXPECT_GE(g.ldc, std::max<int64_t>(1, g.m));
  blas_reference(g, alpha, beta);

  // Direct row-major product on the logical values.
  const std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
  const std::vector<double> got = out_base.to_vector<double>();
  int bad = 0;
  for (int64_t bt = 0; bt < c.batch; ++bt)
    for (int64_t i = 0; i < c.m; ++i)
      for (int64_t j = 0; j < ldc; ++j) {
        const size_t o = size_t((bt * c.m + i) * ldc + j);
        double want = c0[o], bound = 0;
        if (j < c.n) {
          double s = 0;
          for (int64_t l = 0; l < c.k; ++l) {
            const double av =
                c.ta ? va[size_t((bt * ar + l) * ac + i)] : va[size_t((bt * ar + i) * ac + l)];
            const double bv =
                c.tb ? vb[size_t((bt * br + j) * bc + l)] : vb[size_t((bt * br + l) * bc + j)];
            s += av * bv;
            bound += std::abs(av * bv);
          }
          want = alpha * s + beta * c0[o];
          bound = std::abs(alpha) * bound + std::abs(beta * c0[o]);
        }
        if (!(std::abs(got[o] - want) <= 1e-12 * bound) && ++bad <= 5)
          ADD_FAILURE() << "out[" << bt << "," << i << "," << j << "] = " << got[o] << ", expected "
                        << want;
      }
  EXPECT_EQ(bad, 0);
}

TEST(CudaGemmLayout, MapsEveryLayoutOntoColumnMajorBlas) {
  const Layout layouts[] = {Layout::RowMajor, Layout::Transposed, Layout::Strided, Layout::Offset,
                            Layout::RowPadded};
  int id = 0;
  for (Layout la : layouts)
    for (Layout lb : layouts)
      for (int t = 0; t < 4; ++t) {
        Case c{"case " + std::to_string(id++), 2, 7, 5, 6};
        c.la = la;
        c.lb = lb;
        c.ta = t & 1;
        c.tb = t & 2;
        run(c);
      }
}

TEST(CudaGemmLayout, BroadcastBatchesAndPaddedOutput) {
  for (int t = 0; t < 4; ++t)
    for (int bc = 1; bc < 4; ++bc) {
      Case c{"broadcast " + std::to_string(bc) + " t" + std::to_string(t), 3, 4, 9, 5};
      c.ta = t & 1;
      c.tb = t & 2;
      c.bcast_a = bc & 1;
      c.bcast_b = bc & 2;
      c.pad = 3;
      c.la = Layout::Transposed;
      run(c);
    }
}

TEST(CudaGemmLayout, DegenerateSizes) {
  // Size-1 dims whose strides are never stepped, a single batch entry, vectors.
  for (int t = 0; t < 4; ++t) {
    for (const Case& base :
         {Case{"m=1", 2, 1, 6, 4}, Case{"n=1", 2, 5, 1, 4}, Case{"k=1", 2, 5, 6, 1},
          Case{"1x1x1", 1, 1, 1, 1}, Case{"batch1", 1, 8, 3, 2}}) {
      Case c = base;
      c.name += " t" + std::to_string(t);
      c.ta = t & 1;
      c.tb = t & 2;
      run(c);
      c.la = Layout::Transposed;
      c.lb = Layout::Transposed;
      c.name += " transposed views";
      run(c);
    }
  }
}

// A linear layer's call: x [1, rows, in] times W^T as a [1, in, out] view of W [out, in].
TEST(CudaGemmLayout, LinearForwardNeedsNoCopy) {
  const Tensor x = random_f64({1, 6, 4}, 1);
  const Tensor w = random_f64({3, 4}, 2);
  const Tensor wt = make_view(w, {1, 4, 3}, {0, 1, 4}, 0);
  Tensor out = Tensor::empty({1, 6, 3}, DType::f64);
  const ColumnMajorGemm g = column_major_gemm(x, false, wt, false, out);
  EXPECT_EQ(g.a, w.raw_data());  // W goes in as is, transposed by BLAS
  EXPECT_TRUE(g.trans_a);
  EXPECT_EQ(g.lda, 4);
  EXPECT_EQ(g.b, x.raw_data());
  EXPECT_FALSE(g.trans_b);
  EXPECT_EQ(g.ldb, 4);
  EXPECT_EQ(g.ldc, 3);
  EXPECT_FALSE(g.hold_a.keep.defined());
  EXPECT_FALSE(g.hold_b.keep.defined());
}

}  // namespace
}  // namespace strata::cuda
