// strata::gemm against a naive reference that accumulates in f64, for every backend and
// transpose combination, odd sizes, alpha/beta values and padded leading dimensions.
#include "core/kernels/cpu/gemm/gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "core/cpu_features.h"
#include "core/error.h"

namespace strata::gemm {
namespace {

struct Shape {
  int64_t m, n, k;
};

// 65x33x129 and 300x200x517 cross the kernels' register tiles and the cache blocks in m and
// k; 3x4100x3 crosses the column block (4080); k == 0 means C = beta * C.
const Shape kShapes[] = {{1, 1, 1}, {7, 13, 5},   {65, 33, 129}, {300, 200, 517},
                         {5, 7, 0}, {3, 4100, 3}, {16, 16, 16},  {6, 17, 260}};

struct Scalars {
  double alpha, beta;
  int64_t pad;  // extra elements at the end of every row of A, B and C
};
const Scalars kScalars[] = {
    {1.0, 0.0, 0}, {0.5, 1.0, 3}, {-1.5, 0.25, 0}, {2.0, -1.0, 5}, {0.0, 0.5, 1}};

bool is_big(const Shape& s) {
  return s.m * s.n * s.k > 1'000'000;
}

template <class T>
std::vector<T> random_matrix(int64_t rows, int64_t ld, uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<T> v(size_t(std::max<int64_t>(rows * ld, 1)));
  for (auto& x : v) x = T(dist(gen));
  return v;
}

// Row-major stored matrices; element (i, p) of op(X).
template <class T>
double at(const std::vector<T>& x, int64_t ld, bool trans, int64_t i, int64_t p) {
  const T v = trans ? x[size_t(p * ld + i)] : x[size_t(i * ld + p)];
  if constexpr (std::is_same_v<T, bf16>) {
    return double(float(v));
  } else {
    return double(v);
  }
}

// Reference C and the error bound per element: eps * (k + 2) * (|alpha| sum|a||b| + |beta c|),
// the classical bound for a dot product of length k plus the final scale-and-add.
template <class T>
void reference(bool ta, bool tb, const Shape& s, double alpha, const std::vector<T>& a, int64_t lda,
               const std::vector<T>& b, int64_t ldb, double beta, const std::vector<double>& c0,
               int64_t ldc, double eps, std::vector<double>& ref, std::vector<double>& tol) {
  ref.assign(c0.size(), 0.0);
  tol.assign(c0.size(), 0.0);
  for (int64_t i = 0; i < s.m; ++i) {
    for (int64_t j = 0; j < s.n; ++j) {
      double sum = 0.0, mag = 0.0;
      for (int64_t p = 0; p < s.k; ++p) {
        const double x = at(a, lda, ta, i, p) * at(b, ldb, tb, p, j);
        sum += x;
        mag += std::abs(x);
      }
      const double old = beta == 0.0 ? 0.0 : beta * c0[size_t(i * ldc + j)];
      ref[size_t(i * ldc + j)] = alpha * sum + old;
      tol[size_t(i * ldc + j)] =
          eps * double(s.k + 2) * (std::abs(alpha) * mag + std::abs(old)) + 1e-30;
    }
  }
}

using Param = std::tuple<Kernel, Trans, Trans>;

class GemmTest : public ::testing::TestWithParam<Param> {
 protected:
  void SetUp() override {
    if (!kernel_available(std::get<0>(GetParam()))) {
      GTEST_SKIP() << "kernel " << kernel_name(std::get<0>(GetParam()))
                   << " is not available on this CPU (" << cpu_features_string() << ")";
    }
  }
  Kernel kernel() const { return std::get<0>(GetParam()); }
  bool ta() const { return std::get<1>(GetParam()) == Trans::Yes; }
  bool tb() const { return std::get<2>(GetParam()) == Trans::Yes; }

  // Runs every shape x scalars case through `call` (which writes C) and compares. In = the
  // input element type, Out = C's type; eps is the unit of accuracy expected of the kernel.
  template <class In, class Out, class Call>
  void run_all(double eps, Call call) {
    uint32_t seed = 1;
    for (const Shape& s : kShapes) {
      for (const Scalars& sc : kScalars) {
        // The big shape's reference is slow; two scalar cases cover it.
        if (is_big(s) && sc.alpha != 1.0 && sc.beta != 0.25) continue;
        // As in BLAS, a leading dimension is at least 1 even for an empty row (k == 0).
        const int64_t lda = std::max<int64_t>(ta() ? s.m : s.k, 1) + sc.pad;
        const int64_t ldb = std::max<int64_t>(tb() ? s.k : s.n, 1) + sc.pad;
        const int64_t ldc = s.n + sc.pad;
        const auto a = random_matrix<In>(ta() ? s.k : s.m, lda, seed++);
        const auto b = random_matrix<In>(tb() ? s.n : s.k, ldb, seed++);
        auto c = random_matrix<Out>(s.m, ldc, seed++);
        // beta == 0 must not read C: poison it.
        if (sc.beta == 0.0) {
          for (auto& x : c) x = std::numeric_limits<Out>::quiet_NaN();
        }
        const std::vector<double> c0(c.begin(), c.end());
        std::vector<double> ref, tol;
        reference(ta(), tb(), s, sc.alpha, a, lda, b, ldb, sc.beta, c0, ldc, eps, ref, tol);
        call(s, Out(sc.alpha), a.data(), lda, b.data(), ldb, Out(sc.beta), c.data(), ldc);
        int failures = 0;
        for (int64_t i = 0; i < s.m && failures < 5; ++i) {
          for (int64_t j = 0; j < ldc && failures < 5; ++j) {
            const size_t idx = size_t(i * ldc + j);
            const double got = double(c[idx]);
            if (j >= s.n) {
              // Padding is never written.
              const bool same = std::isnan(c0[idx]) ? std::isnan(got) : got == c0[idx];
              if (!same) ++failures;
              EXPECT_TRUE(same) << "padding overwritten at (" << i << ", " << j << ")";
              continue;
            }
            const bool ok = std::abs(got - ref[idx]) <= tol[idx];
            if (!ok) ++failures;
            EXPECT_TRUE(ok) << "m=" << s.m << " n=" << s.n << " k=" << s.k << " alpha=" << sc.alpha
                            << " beta=" << sc.beta << " pad=" << sc.pad << " at (" << i << ", " << j
                            << "): got " << got << ", expected " << ref[idx] << " +- " << tol[idx];
          }
        }
      }
    }
  }
};

TEST_P(GemmTest, Sgemm) {
  run_all<float, float>(
      FLT_EPSILON, [&](const Shape& s, float alpha, const float* a, int64_t lda, const float* b,
                       int64_t ldb, float beta, float* c, int64_t ldc) {
        sgemm(kernel(), std::get<1>(GetParam()), std::get<2>(GetParam()), s.m, s.n, s.k, alpha, a,
              lda, b, ldb, beta, c, ldc);
      });
}

TEST_P(GemmTest, Dgemm) {
  run_all<double, double>(
      DBL_EPSILON, [&](const Shape& s, double alpha, const double* a, int64_t lda, const double* b,
                       int64_t ldb, double beta, double* c, int64_t ldc) {
        dgemm(kernel(), std::get<1>(GetParam()), std::get<2>(GetParam()), s.m, s.n, s.k, alpha, a,
              lda, b, ldb, beta, c, ldc);
      });
}

// Inputs are bf16 (random_matrix rounds them), so the reference sees exactly the rounded
// values; accumulation is f32.
TEST_P(GemmTest, Bf16gemm) {
  run_all<bf16, float>(FLT_EPSILON,
                       [&](const Shape& s, float alpha, const bf16* a, int64_t lda, const bf16* b,
                           int64_t ldb, float beta, float* c, int64_t ldc) {
                         bf16gemm(kernel(), std::get<1>(GetParam()), std::get<2>(GetParam()), s.m,
                                  s.n, s.k, alpha, a, lda, b, ldb, beta, c, ldc);
                       });
}

// Stride 0 shares one A (weights) across the batch; batch 4 runs across the batch on 2 threads,
// batch 3 runs entry by entry.
TEST_P(GemmTest, SgemmBatchedSharedA) {
  const Shape s{37, 29, 45};
  for (int64_t batch : {1, 3, 4}) {
    const int64_t lda = ta() ? s.m : s.k, ldb = tb() ? s.k : s.n, ldc = s.n;
    const int64_t stride_b = (tb() ? s.n : s.k) * ldb, stride_c = s.m * ldc;
    const auto a = random_matrix<float>(ta() ? s.k : s.m, lda, 11);
    const auto b = random_matrix<float>(batch * (tb() ? s.n : s.k), ldb, 12);
    std::vector<float> c(size_t(batch * stride_c), std::numeric_limits<float>::quiet_NaN());
    sgemm_batched(kernel(), std::get<1>(GetParam()), std::get<2>(GetParam()), batch, s.m, s.n, s.k,
                  1.0f, a.data(), lda, 0, b.data(), ldb, stride_b, 0.0f, c.data(), ldc, stride_c);
    for (int64_t e = 0; e < batch; ++e) {
      const std::vector<float> be(b.begin() + e * stride_b, b.begin() + (e + 1) * stride_b);
      const std::vector<double> c0(size_t(stride_c), 0.0);
      std::vector<double> ref, tol;
      reference(ta(), tb(), s, 1.0, a, lda, be, ldb, 0.0, c0, ldc, FLT_EPSILON, ref, tol);
      for (int64_t i = 0; i < stride_c; ++i) {
        ASSERT_NEAR(c[size_t(e * stride_c + i)], ref[size_t(i)], tol[size_t(i)])
            << "batch " << batch << " entry " << e << " element " << i;
      }
    }
  }
}

TEST_P(GemmTest, DgemmBatchedSharedB) {
  const Shape s{21, 35, 19};
  const int64_t batch = 4;
  const int64_t lda = ta() ? s.m : s.k, ldb = tb() ? s.k : s.n, ldc = s.n;
  const int64_t stride_a = (ta() ? s.k : s.m) * lda, stride_c = s.m * ldc;
  const auto a = random_matrix<double>(batch * (ta() ? s.k : s.m), lda, 21);
  const auto b = random_matrix<double>(tb() ? s.n : s.k, ldb, 22);
  auto c = random_matrix<double>(batch * s.m, ldc, 23);
  const std::vector<double> c_in = c;
  dgemm_batched(kernel(), std::get<1>(GetParam()), std::get<2>(GetParam()), batch, s.m, s.n, s.k,
                0.75, a.data(), lda, stride_a, b.data(), ldb, 0, -0.5, c.data(), ldc, stride_c);
  for (int64_t e = 0; e < batch; ++e) {
    const std::vector<double> ae(a.begin() + e * stride_a, a.begin() + (e + 1) * stride_a);
    const std::vector<double> c0(c_in.begin() + e * stride_c, c_in.begin() + (e + 1) * stride_c);
    std::vector<double> ref, tol;
    reference(ta(), tb(), s, 0.75, ae, lda, b, ldb, -0.5, c0, ldc, DBL_EPSILON, ref, tol);
    for (int64_t i = 0; i < stride_c; ++i) {
      ASSERT_NEAR(c[size_t(e * stride_c + i)], ref[size_t(i)], tol[size_t(i)]);
    }
  }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  const auto [k, ta, tb] = info.param;
  return std::string(kernel_name(k)) + (ta == Trans::Yes ? "_T" : "_N") +
         (tb == Trans::Yes ? "T" : "N");
}

INSTANTIATE_TEST_SUITE_P(AllKernels, GemmTest,
                         ::testing::Combine(::testing::Values(Kernel::Auto, Kernel::OpenBlas,
                                                              Kernel::Dnnl, Kernel::Avx2),
                                            ::testing::Values(Trans::No, Trans::Yes),
                                            ::testing::Values(Trans::No, Trans::Yes)),
                         param_name);

// Our kernel partitions the output among threads but accumulates every element the same way,
// so 1 and 2 threads give bit-identical results.
TEST(GemmDeterminism, Avx2SameBitsForAnyThreadCount) {
  if (!kernel_available(Kernel::Avx2)) GTEST_SKIP() << "no avx2+fma on this CPU";
  const Shape s{203, 301, 530};
  const auto a = random_matrix<float>(s.m, s.k, 31);
  const auto b = random_matrix<float>(s.k, s.n, 32);
  const int saved = omp_get_max_threads();
  std::vector<float> c1(size_t(s.m * s.n)), c2(size_t(s.m * s.n));
  omp_set_num_threads(1);
  sgemm(Kernel::Avx2, Trans::No, Trans::No, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.n, 0.0f,
        c1.data(), s.n);
  omp_set_num_threads(2);
  sgemm(Kernel::Avx2, Trans::No, Trans::No, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.n, 0.0f,
        c2.data(), s.n);
  omp_set_num_threads(saved);
  EXPECT_EQ(c1, c2);
}

void expect_error(const std::function<void()>& f, const std::string& needle) {
  try {
    f();
    ADD_FAILURE() << "expected strata::Error containing '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' lacks '" << needle << "'";
  }
}

TEST(GemmErrors, BadArgumentsAreReported) {
  std::vector<float> a(64), b(64), c(64);
  const auto call = [&](int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc,
                        Trans ta = Trans::No) {
    return [=, &a, &b, &c] {
      sgemm(Kernel::Auto, ta, Trans::No, m, n, k, 1.0f, a.data(), lda, b.data(), ldb, 0.0f,
            c.data(), ldc);
    };
  };
  EXPECT_THROW(call(-1, 2, 2, 2, 2, 2)(), Error);
  expect_error(call(-1, 2, 2, 2, 2, 2), "sgemm: got m = -1, expected m >= 0");
  expect_error(call(2, -3, 2, 2, 2, 2), "got n = -3");
  expect_error(call(2, 2, -4, 2, 2, 2), "got k = -4");
  expect_error(call(4, 5, 6, 5, 5, 5), "sgemm: got lda = 5, expected lda >= 6 (A is stored 4 x 6");
  expect_error(call(4, 5, 6, 3, 5, 5, Trans::Yes),
               "got lda = 3, expected lda >= 4 (A is stored 6 x 4, Trans::Yes)");
  expect_error(call(4, 5, 6, 6, 4, 5), "got ldb = 4, expected ldb >= 5");
  expect_error(call(4, 5, 6, 6, 5, 3), "got ldc = 3, expected ldc >= 5");
  expect_error(
      [&] {
        dgemm(Kernel::Auto, Trans::No, Trans::No, 2, 2, 2, 1.0, nullptr, 2, nullptr, 2, 0.0,
              nullptr, 2);
      },
      "dgemm: A is null");
  expect_error(
      [&] {
        sgemm_batched(Kernel::Auto, Trans::No, Trans::No, 3, 2, 2, 2, 1.0f, a.data(), 2, 0,
                      b.data(), 2, 0, 0.0f, c.data(), 2, 0);
      },
      "expected stride_c > 0");
  expect_error([] { parse_kernel("mkl"); },
               "unknown kernel 'mkl', expected one of: auto, openblas, dnnl, avx2");
}

TEST(GemmKernels, NamesParseAndAutoResolvesToAnAvailableKernel) {
  for (Kernel k : {Kernel::Auto, Kernel::OpenBlas, Kernel::Dnnl, Kernel::Avx2}) {
    EXPECT_EQ(parse_kernel(kernel_name(k)), k);
  }
  const Kernel chosen = resolve(Kernel::Auto);
  EXPECT_NE(chosen, Kernel::Auto);
  EXPECT_TRUE(kernel_available(chosen));
  EXPECT_EQ(resolve(Kernel::OpenBlas), Kernel::OpenBlas);
  const CpuFeatures& f = cpu_features();
  EXPECT_EQ(kernel_available(Kernel::Avx2), f.avx2 && f.fma);
  if (f.avx2 && f.fma && !f.avx512f) {
    EXPECT_EQ(chosen, Kernel::Avx2);
  }
}

}  // namespace
}  // namespace strata::gemm
