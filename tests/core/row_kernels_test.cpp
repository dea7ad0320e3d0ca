// Row-wise CPU kernels against naive f64 references, finite differences, special values and
// thread-count independence.
#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/kernels/cpu/activation_kernels.h"
#include "core/kernels/cpu/cross_entropy_kernels.h"
#include "core/kernels/cpu/norm_kernels.h"
#include "core/kernels/cpu/softmax_kernels.h"
#include "core/kernels/cpu/vec_math.h"

namespace strata::cpu {
namespace {

using Vec = std::vector<double>;
constexpr double kInf = std::numeric_limits<double>::infinity();

Vec randn(size_t n, uint64_t seed, double scale = 1.0) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<double> d(0.0, scale);
  Vec v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

template <class T>
std::vector<T> cast(const Vec& v) {
  std::vector<T> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = T(float(v[i]));
  if constexpr (std::is_same_v<T, double>)
    for (size_t i = 0; i < v.size(); ++i) out[i] = v[i];
  return out;
}

template <class T>
Vec widen(const std::vector<T>& v) {
  Vec out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = double(static_cast<acc_t<T>>(v[i]));
  return out;
}

// Inputs as the kernel sees them: a bf16 or f32 test must compare against the reference on the
// rounded inputs, not the f64 originals.
template <class T>
Vec quantise(const Vec& v) {
  return widen(cast<T>(v));
}

template <class T>
struct Tol {
  double rtol, atol;
};
template <class T>
Tol<T> tol() {
  if constexpr (std::is_same_v<T, double>) return {1e-12, 1e-13};
  if constexpr (std::is_same_v<T, float>) return {1e-5, 1e-6};
  return {1.6e-2, 2e-3};  // bf16 keeps 8 significant bits
}

// |got - ref| <= rtol * |ref| + atol * scale, where scale is the largest |ref| (so entries that
// result from cancellation are judged against the size of their row, not their own).
// A caller may pass the scale explicitly when the reference is itself a cancellation.
void expect_close(const Vec& got, const Vec& ref, double rtol, double atol, const std::string& what,
                  double scale = 0) {
  ASSERT_EQ(got.size(), ref.size()) << what;
  for (double r : ref)
    if (std::isfinite(r)) scale = std::max(scale, std::abs(r));
  scale = std::max(scale, 1e-30);
  int bad = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const bool ok = std::isnan(ref[i]) ? std::isnan(got[i])
                    : std::isinf(ref[i])
                        ? got[i] == ref[i]
                        : std::abs(got[i] - ref[i]) <= rtol * std::abs(ref[i]) + atol * scale;
    if (!ok && ++bad <= 5)
      ADD_FAILURE() << what << ": index " << i << " got " << got[i] << " expected " << ref[i];
  }
  EXPECT_EQ(bad, 0) << what;
}

// ---------------------------------------------------------------- naive f64 references

Vec ref_softmax(const Vec& x, int64_t rows, int64_t n, bool log) {
  Vec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = x.data() + r * n;
    double m = -kInf;
    for (int64_t j = 0; j < n; ++j) m = std::max(m, xr[j]);
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += std::exp(xr[j] - m);
    for (int64_t j = 0; j < n; ++j)
      y[r * n + j] = log ? xr[j] - m - std::log(s) : std::exp(xr[j] - m) / s;
  }
  return y;
}

Vec ref_softmax_bwd(const Vec& y, const Vec& dy, int64_t rows, int64_t n, bool log) {
  Vec dx(y.size());
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0;
    for (int64_t j = 0; j < n; ++j) s += log ? dy[r * n + j] : dy[r * n + j] * y[r * n + j];
    for (int64_t j = 0; j < n; ++j) {
      const int64_t i = r * n + j;
      dx[i] = log ? dy[i] - std::exp(y[i]) * s : y[i] * (dy[i] - s);
    }
  }
  return dx;
}

// LayerNorm (centred) or RMSNorm; w, b may be empty.
Vec ref_norm(const Vec& x, const Vec& w, const Vec& b, int64_t rows, int64_t n, double eps,
             bool centred) {
  Vec y(x.size());
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0, var = 0;
    if (centred) {
      for (int64_t j = 0; j < n; ++j) mean += x[r * n + j];
      mean /= n;
    }
    for (int64_t j = 0; j < n; ++j) var += (x[r * n + j] - mean) * (x[r * n + j] - mean);
    const double rstd = 1 / std::sqrt(var / n + eps);
    for (int64_t j = 0; j < n; ++j) {
      double v = (x[r * n + j] - mean) * rstd;
      if (!w.empty()) v *= w[j];
      if (!b.empty()) v += b[j];
      y[r * n + j] = v;
    }
  }
  return y;
}

Vec ref_ce(const Vec& x, const std::vector<int64_t>& t, int64_t rows, int64_t V, int64_t ignore,
           double ls, Vec* lse_out = nullptr) {
  Vec loss(rows);
  if (lse_out) lse_out->assign(rows, 0);
  for (int64_t r = 0; r < rows; ++r) {
    const double* xr = x.data() + r * V;
    double m = -kInf, sx = 0;
    for (int64_t j = 0; j < V; ++j) m = std::max(m, xr[j]), sx += xr[j];
    double s = 0;
    for (int64_t j = 0; j < V; ++j) s += std::exp(xr[j] - m);
    const double lse = m + std::log(s);
    if (lse_out) (*lse_out)[r] = lse;
    if (t[r] == ignore) continue;
    double picked = xr[t[r]];
    if (ls != 0) picked = (1 - ls) * picked + ls / V * sx;
    loss[r] = lse - picked;
  }
  return loss;
}

// 0.5 (1 + tanh(u)) is written as sigmoid(2u) so the reference does not cancel for x < 0.
double act_ref(Act act, double x, double* deriv = nullptr) {
  double v = 0, d = 0;
  switch (act) {
    case Act::GeluExact: {
      const double cdf = 0.5 * std::erfc(-x / std::sqrt(2.0));
      v = x * cdf;
      d = cdf + x * std::exp(-0.5 * x * x) / std::sqrt(2 * M_PI);
      break;
    }
    case Act::GeluTanh: {
      const double k = std::sqrt(2 / M_PI);
      const double s = 1 / (1 + std::exp(-2 * k * (x + 0.044715 * x * x * x)));
      v = x * s;
      d = s + x * s * (1 - s) * 2 * k * (1 + 3 * 0.044715 * x * x);
      break;
    }
    case Act::Silu: {
      const double s = 1 / (1 + std::exp(-x));
      v = x * s;
      d = s * (1 + x * (1 - s));
      break;
    }
  }
  if (deriv) *deriv = d;
  return v;
}

// Central differences of L(x) = sum(dy * f(x)) in f64.
template <class F>
Vec fd_grad(Vec x, const Vec& dy, F f, double h = 1e-6) {
  Vec g(x.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double keep = x[i];
    x[i] = keep + h;
    const Vec yp = f(x);
    x[i] = keep - h;
    const Vec ym = f(x);
    x[i] = keep;
    double s = 0;
    for (size_t k = 0; k < yp.size(); ++k) s += dy[k] * (yp[k] - ym[k]);
    g[i] = s / (2 * h);
  }
  return g;
}

struct Shape {
  int64_t rows, n;
};
const Shape kShapes[] = {{1, 1}, {5, 7}, {300, 7}, {33, 768}, {3, 32128}};

// ---------------------------------------------------------------- vec_math

int64_t ordered(float f) {
  int32_t i;
  std::memcpy(&i, &f, 4);
  return i < 0 ? -int64_t(i & 0x7fffffff) : int64_t(i);
}

int64_t ulps(float got, float ref) {
  if (std::isnan(got) || std::isnan(ref)) return std::isnan(got) && std::isnan(ref) ? 0 : 1 << 30;
  if (got == ref) return 0;
  return std::llabs(ordered(got) - ordered(ref));
}

enum class Fn { Exp, Log, Tanh, Erf, Erfc };

// The vector functions need an AVX2 caller to inline into.
STRATA_AVX2 void apply8(Fn f, const float* x, float* y) {
  const __m256 v = avx2::load8(x);
  switch (f) {
    case Fn::Exp:
      return avx2::store8(y, avx2::exp8(v));
    case Fn::Log:
      return avx2::store8(y, avx2::log8(v));
    case Fn::Tanh:
      return avx2::store8(y, avx2::tanh8(v));
    case Fn::Erf:
      return avx2::store8(y, avx2::erf8(v));
    case Fn::Erfc:
      return avx2::store8(y, avx2::erfc8(v));
  }
}

STRATA_AVX2 void bf16_round_trip8(const float* x, bf16* h, float* back) {
  avx2::store8(h, avx2::load8(x));
  avx2::store8(back, avx2::load8(h));
}

template <class R>
void check_ulps(const char* name, Fn fn, R rf, int64_t max_ulps) {
  std::vector<float> xs = {0.0f,    -0.0f,   INFINITY, -INFINITY,       NAN,     -NAN,
                           1.0f,    -1.0f,   88.7228f, 88.73f,          -87.33f, -103.97f,
                           -104.5f, 1e-45f,  -1e-45f,  1.17549435e-38f, 3.4e38f, -3.4e38f,
                           0.625f,  -0.625f, 2.5f,     -2.5f,           10.1f,   -10.1f,
                           9.0f,    4.0f,    1e-20f,   -1e-20f};
  // ~4.2 million points spread evenly over all bit patterns: every binade of both signs.
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 1021) {
    const uint32_t u = uint32_t(b);
    float x;
    std::memcpy(&x, &u, 4);
    xs.push_back(x);
  }
  while (xs.size() % 8) xs.push_back(1.5f);
  int64_t worst = 0;
  float worst_x = 0;
  for (size_t i = 0; i < xs.size(); i += 8) {
    float ys[8];
    apply8(fn, xs.data() + i, ys);
    for (int k = 0; k < 8; ++k) {
      const float ref = float(rf(double(xs[i + k])));
      const int64_t d = ulps(ys[k], ref);
      if (d > worst) worst = d, worst_x = xs[i + k];
    }
  }
  EXPECT_LE(worst, max_ulps) << name << " worst at x=" << worst_x << " over " << xs.size()
                             << " points";
}

TEST(VecMath, AccuracyOverWholeRange) {
  if (!cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA";
  check_ulps(
      "exp", Fn::Exp, [](double x) { return std::exp(x); }, 2);
  check_ulps(
      "log", Fn::Log, [](double x) { return std::log(x); }, 2);
  check_ulps(
      "tanh", Fn::Tanh, [](double x) { return std::tanh(x); }, 2);
  check_ulps(
      "erf", Fn::Erf, [](double x) { return std::erf(x); }, 2);
  check_ulps(
      "erfc", Fn::Erfc, [](double x) { return std::erfc(x); }, 8);
}

TEST(VecMath, SpecialValues) {
  if (!cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA";
  float in[8] = {-INFINITY, INFINITY, NAN, 0.0f, -0.0f, 100.0f, -200.0f, -1.0f}, out[8];
  apply8(Fn::Exp, in, out);
  EXPECT_EQ(out[0], 0.0f);
  EXPECT_EQ(out[1], INFINITY);
  EXPECT_TRUE(std::isnan(out[2]));
  EXPECT_EQ(out[3], 1.0f);
  EXPECT_EQ(out[5], INFINITY);
  EXPECT_EQ(out[6], 0.0f);
  apply8(Fn::Log, in, out);
  EXPECT_TRUE(std::isnan(out[0]));
  EXPECT_EQ(out[1], INFINITY);
  EXPECT_TRUE(std::isnan(out[2]));
  EXPECT_EQ(out[3], -INFINITY);
  EXPECT_EQ(out[4], -INFINITY);
  EXPECT_TRUE(std::isnan(out[7]));
  apply8(Fn::Tanh, in, out);
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_EQ(out[1], 1.0f);
  EXPECT_TRUE(std::isnan(out[2]));
  apply8(Fn::Erf, in, out);
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_EQ(out[1], 1.0f);
  EXPECT_TRUE(std::isnan(out[2]));
  apply8(Fn::Erfc, in, out);
  EXPECT_EQ(out[0], 2.0f);
  EXPECT_EQ(out[1], 0.0f);
  EXPECT_TRUE(std::isnan(out[2]));
}

TEST(VecMath, Bf16LoadStoreMatchScalar) {
  if (!cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA";
  std::vector<float> xs = {NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 3.4e38f, 1e-40f, 1.00390625f};
  for (uint64_t b = 0; b < (uint64_t(1) << 32); b += 9973) {
    const uint32_t u = uint32_t(b);
    float x;
    std::memcpy(&x, &u, 4);
    xs.push_back(x);
  }
  while (xs.size() % 8) xs.push_back(1.0f);
  for (size_t i = 0; i < xs.size(); i += 8) {
    bf16 v[8];
    float back[8];
    bf16_round_trip8(xs.data() + i, v, back);
    for (int k = 0; k < 8; ++k) {
      ASSERT_EQ(v[k].bits, bf16(xs[i + k]).bits) << "x=" << xs[i + k];
      const float s = float(v[k]);
      ASSERT_EQ(std::memcmp(&back[k], &s, 4), 0);
    }
  }
}

// ---------------------------------------------------------------- softmax

template <class T>
void check_softmax(Shape s, bool log) {
  const auto [rows, n] = s;
  const std::string what = std::string(log ? "log_softmax" : "softmax") +
                           " rows=" + std::to_string(rows) + " n=" + std::to_string(n);
  const Vec x = quantise<T>(randn(rows * n, 1 + n, 3.0));
  const auto xt = cast<T>(x);
  std::vector<T> y(x.size());
  softmax_forward(xt.data(), y.data(), rows, n, log);
  const auto [rtol, atol] = tol<T>();
  const Vec yr = ref_softmax(x, rows, n, log);
  // softmax entries are small and relative accuracy is what matters there.
  expect_close(widen(y), yr, rtol, log ? atol : 0.0, what + " fwd");
  const Vec dy = quantise<T>(randn(rows * n, 7 + n));
  const auto dyt = cast<T>(dy);
  std::vector<T> dx(x.size());
  softmax_backward(y.data(), dyt.data(), dx.data(), rows, n, log);
  expect_close(widen(dx), ref_softmax_bwd(widen(y), dy, rows, n, log), rtol, atol, what + " bwd");
}

TEST(Softmax, MatchesReference) {
  for (const Shape s : kShapes)
    for (bool log : {false, true}) {
      check_softmax<float>(s, log);
      check_softmax<double>(s, log);
      check_softmax<bf16>(s, log);
    }
}

TEST(Softmax, BackwardMatchesFiniteDifferences) {
  const int64_t rows = 3, n = 9;
  for (bool log : {false, true}) {
    const Vec x = randn(rows * n, 11), dy = randn(rows * n, 12);
    Vec y(x.size()), dx(x.size());
    softmax_forward(x.data(), y.data(), rows, n, log);
    softmax_backward(y.data(), dy.data(), dx.data(), rows, n, log);
    const Vec fd = fd_grad(x, dy, [&](const Vec& xx) { return ref_softmax(xx, rows, n, log); });
    expect_close(dx, fd, 1e-6, 1e-8, log ? "log_softmax fd" : "softmax fd");
  }
}

TEST(Softmax, ExtremeValues) {
  // Large logits, partial -inf rows (exact zeros), and an all -inf row (NaN, as in PyTorch).
  const int64_t n = 19;
  Vec x = randn(3 * n, 5, 1e4);
  for (int64_t j = 0; j < n; j += 3) x[j] = -kInf;
  for (int64_t j = 0; j < n; ++j) x[2 * n + j] = -kInf;
  for (bool log : {false, true}) {
    std::vector<float> y(x.size());
    const auto xf = cast<float>(x);
    softmax_forward(xf.data(), y.data(), 3, n, log);
    const Vec ref = ref_softmax(quantise<float>(x), 3, n, log);
    for (int64_t j = 0; j < 2 * n; ++j) {
      if (std::isinf(ref[j])) {
        EXPECT_EQ(y[j], float(ref[j])) << j;
      } else if (!log && ref[j] == 0) {
        EXPECT_EQ(y[j], 0.0f) << j;
      } else {
        EXPECT_NEAR(y[j], ref[j], 1e-5 * std::abs(ref[j]) + 1e-6) << j;
      }
    }
    for (int64_t j = 2 * n; j < 3 * n; ++j) EXPECT_TRUE(std::isnan(y[j])) << j;
  }
}

// ---------------------------------------------------------------- norms

template <class T>
void check_norm(Shape s, bool centred, bool affine) {
  const auto [rows, n] = s;
  const std::string what = std::string(centred ? "layer_norm" : "rms_norm") +
                           (affine ? " affine" : "") + " rows=" + std::to_string(rows) +
                           " n=" + std::to_string(n);
  const double eps = 1e-5;
  const Vec x = quantise<T>(randn(rows * n, 21 + n, 2.0));
  const Vec w = affine ? quantise<T>(randn(n, 22)) : Vec{};
  const Vec b = affine && centred ? quantise<T>(randn(n, 23)) : Vec{};
  const Vec dy = quantise<T>(randn(rows * n, 24 + n));
  const auto xt = cast<T>(x), wt = cast<T>(w), bt = cast<T>(b), dyt = cast<T>(dy);
  const T* wp = affine ? wt.data() : nullptr;
  const T* bp = affine && centred ? bt.data() : nullptr;
  std::vector<T> y(x.size()), dx(x.size()), dw(n), db(n);
  std::vector<acc_t<T>> mean(rows), rstd(rows);
  if (centred) {
    layer_norm_forward(xt.data(), wp, bp, y.data(), mean.data(), rstd.data(), rows, n, eps);
    layer_norm_backward(xt.data(), wp, mean.data(), rstd.data(), dyt.data(), dx.data(),
                        affine ? dw.data() : nullptr, affine ? db.data() : nullptr, rows, n);
  } else {
    rms_norm_forward(xt.data(), wp, y.data(), rstd.data(), rows, n, eps);
    rms_norm_backward(xt.data(), wp, rstd.data(), dyt.data(), dx.data(),
                      affine ? dw.data() : nullptr, rows, n);
  }
  const auto [rtol, atol] = tol<T>();
  expect_close(widen(y), ref_norm(x, w, b, rows, n, eps, centred), rtol, atol, what + " fwd");
  // Backward reference: the analytic gradient in f64, checked itself against finite
  // differences in the f64 test below.
  std::vector<double> xd = x, wd = w, dyd = dy, dxr(x.size()), dwr(n), dbr(n);
  Vec meand(rows), rstdd(rows);
  if (centred) {
    Vec yd(x.size());
    layer_norm_forward<double>(xd.data(), affine ? wd.data() : nullptr, nullptr, yd.data(),
                               meand.data(), rstdd.data(), rows, n, eps);
    layer_norm_backward(xd.data(), affine ? wd.data() : nullptr, meand.data(), rstdd.data(),
                        dyd.data(), dxr.data(), dwr.data(), dbr.data(), rows, n);
  } else {
    Vec yd(x.size());
    rms_norm_forward(xd.data(), affine ? wd.data() : nullptr, yd.data(), rstdd.data(), rows, n,
                     eps);
    rms_norm_backward(xd.data(), affine ? wd.data() : nullptr, rstdd.data(), dyd.data(), dxr.data(),
                      dwr.data(), rows, n);
  }
  // A row sum over up to 300 rows and a difference of two row means in dx: scale the tolerance.
  const double k = std::is_same_v<T, bf16> ? 2.0 : 10.0;
  double gscale = 0;
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j)
      gscale = std::max(gscale, std::abs(dy[r * n + j] * (affine ? w[j] : 1.0) * rstdd[r]));
  expect_close(widen(dx), dxr, rtol * k, atol * k, what + " dx", gscale);
  if (affine) {
    expect_close(widen(dw), dwr, rtol * k, atol * k, what + " dw");
    if (centred) expect_close(widen(db), dbr, rtol * k, atol * k, what + " db");
  }
}

TEST(Norm, MatchesReference) {
  for (const Shape s : kShapes)
    for (bool centred : {true, false})
      for (bool affine : {true, false}) {
        check_norm<float>(s, centred, affine);
        check_norm<double>(s, centred, affine);
        check_norm<bf16>(s, centred, affine);
      }
}

TEST(Norm, BackwardMatchesFiniteDifferences) {
  const int64_t rows = 4, n = 11;
  const double eps = 1e-5;
  const Vec x = randn(rows * n, 31), w = randn(n, 32), b = randn(n, 33), dy = randn(rows * n, 34);
  for (bool centred : {true, false}) {
    Vec y(x.size()), mean(rows), rstd(rows), dx(x.size()), dw(n), db(n);
    if (centred) {
      layer_norm_forward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, n,
                         eps);
      layer_norm_backward(x.data(), w.data(), mean.data(), rstd.data(), dy.data(), dx.data(),
                          dw.data(), db.data(), rows, n);
    } else {
      rms_norm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, n, eps);
      rms_norm_backward(x.data(), w.data(), rstd.data(), dy.data(), dx.data(), dw.data(), rows, n);
    }
    const Vec bb = centred ? b : Vec{};
    const char* name = centred ? "layer_norm" : "rms_norm";
    expect_close(
        dx, fd_grad(x, dy, [&](const Vec& v) { return ref_norm(v, w, bb, rows, n, eps, centred); }),
        1e-6, 1e-8, std::string(name) + " fd dx");
    expect_close(
        dw, fd_grad(w, dy, [&](const Vec& v) { return ref_norm(x, v, bb, rows, n, eps, centred); }),
        1e-6, 1e-8, std::string(name) + " fd dw");
    if (centred)
      expect_close(
          db, fd_grad(b, dy, [&](const Vec& v) { return ref_norm(x, w, v, rows, n, eps, true); }),
          1e-6, 1e-8, "layer_norm fd db");
  }
}

// ---------------------------------------------------------------- cross-entropy

std::vector<int64_t> targets(int64_t rows, int64_t V, uint64_t seed, int64_t ignore) {
  std::mt19937_64 gen(seed);
  std::vector<int64_t> t(rows);
  for (auto& v : t) v = gen() % 5 == 0 ? ignore : int64_t(gen() % uint64_t(V));
  return t;
}

template <class T>
void check_ce(Shape s, double ls) {
  const auto [rows, V] = s;
  const std::string what = "cross_entropy rows=" + std::to_string(rows) +
                           " V=" + std::to_string(V) + " ls=" + std::to_string(ls);
  const int64_t ignore = -100;
  const Vec x = quantise<T>(randn(rows * V, 41 + V, 4.0));
  const auto t = targets(rows, V, 42 + V, ignore);
  const auto xt = cast<T>(x);
  std::vector<acc_t<T>> loss(rows), lse(rows), dloss(rows);
  cross_entropy_forward(xt.data(), t.data(), rows, V, ignore, ls, loss.data(), lse.data());
  Vec lse_ref;
  const Vec loss_ref = ref_ce(x, t, rows, V, ignore, ls, &lse_ref);
  const double rtol = std::is_same_v<T, double> ? 1e-12 : 1e-5;
  expect_close(widen(loss), loss_ref, rtol, rtol, what + " loss");
  expect_close(widen(lse), lse_ref, rtol, 0, what + " lse");
  const Vec dl = randn(rows, 43);
  for (int64_t r = 0; r < rows; ++r) dloss[r] = acc_t<T>(dl[r]);
  std::vector<T> dx(x.size());
  cross_entropy_backward(xt.data(), t.data(), lse.data(), dloss.data(), rows, V, ignore, ls,
                         dx.data());
  Vec dref(x.size());
  const Vec sm = ref_softmax(x, rows, V, false);
  for (int64_t r = 0; r < rows; ++r) {
    if (t[r] == ignore) continue;
    const double d = double(dloss[r]);
    for (int64_t j = 0; j < V; ++j)
      dref[r * V + j] = d * (sm[r * V + j] - (j == t[r] ? 1 - ls : 0) - ls / V);
  }
  const auto [rt, at] = tol<T>();
  double dscale = 0;
  for (double v : dl) dscale = std::max(dscale, std::abs(v));
  expect_close(widen(dx), dref, rt, at, what + " dlogits", dscale);
  for (int64_t r = 0; r < rows; ++r)
    if (t[r] == ignore) {
      EXPECT_EQ(loss[r], 0) << what;
      for (int64_t j = 0; j < V; ++j) ASSERT_EQ(double(static_cast<acc_t<T>>(dx[r * V + j])), 0.0);
    }
}

TEST(CrossEntropy, MatchesReference) {
  for (const Shape s : {Shape{1, 1}, Shape{9, 7}, Shape{300, 7}, Shape{20, 768}, Shape{6, 32128}})
    for (double ls : {0.0, 0.1}) {
      check_ce<float>(s, ls);
      check_ce<double>(s, ls);
      check_ce<bf16>(s, ls);
    }
}

TEST(CrossEntropy, BackwardMatchesFiniteDifferences) {
  const int64_t rows = 5, V = 13, ignore = -100;
  const Vec x = randn(rows * V, 51);
  const std::vector<int64_t> t = {3, ignore, 0, 12, 7};
  const Vec dl = randn(rows, 52);
  for (double ls : {0.0, 0.2}) {
    Vec loss(rows), lse(rows), dx(x.size());
    cross_entropy_forward(x.data(), t.data(), rows, V, ignore, ls, loss.data(), lse.data());
    cross_entropy_backward(x.data(), t.data(), lse.data(), dl.data(), rows, V, ignore, ls,
                           dx.data());
    const Vec fd = fd_grad(x, dl, [&](const Vec& v) { return ref_ce(v, t, rows, V, ignore, ls); });
    expect_close(dx, fd, 1e-6, 1e-8, "cross_entropy fd ls=" + std::to_string(ls));
  }
}

TEST(CrossEntropy, LargeLogits) {
  const int64_t rows = 4, V = 1000;
  Vec x = randn(rows * V, 61, 1e4);
  x[5] = -kInf;  // a masked class must not disturb the others
  const std::vector<int64_t> t = {1, 2, 3, 4};
  const auto xf = cast<float>(x);
  std::vector<float> loss(rows), lse(rows), dl(rows, 1.0f), dx(x.size());
  cross_entropy_forward(xf.data(), t.data(), rows, V, -100, 0.0, loss.data(), lse.data());
  cross_entropy_backward(xf.data(), t.data(), lse.data(), dl.data(), rows, V, -100, 0.0, dx.data());
  const Vec ref = ref_ce(quantise<float>(x), t, rows, V, -100, 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    EXPECT_TRUE(std::isfinite(loss[r]));
    EXPECT_NEAR(loss[r], ref[r], 1e-5 * std::abs(ref[r]) + 1e-3);
  }
  for (float v : dx) EXPECT_TRUE(std::isfinite(v));
  EXPECT_EQ(dx[5], 0.0f);
}

TEST(CrossEntropy, OutOfRangeTargetThrows) {
  const int64_t rows = 3, V = 5;
  const std::vector<float> x(rows * V, 0.5f);
  std::vector<float> loss(rows), lse(rows), dl(rows, 1.0f), dx(rows * V);
  for (int64_t bad : {int64_t(7), int64_t(-1), int64_t(5)}) {
    const std::vector<int64_t> t = {0, bad, -100};
    try {
      cross_entropy_forward(x.data(), t.data(), rows, V, -100, 0.0, loss.data(), lse.data());
      FAIL() << "no error for target " << bad;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("row 1"), std::string::npos) << msg;
      EXPECT_NE(msg.find("target " + std::to_string(bad)), std::string::npos) << msg;
      EXPECT_NE(msg.find("V=5"), std::string::npos) << msg;
    }
    EXPECT_THROW(cross_entropy_backward(x.data(), t.data(), lse.data(), dl.data(), rows, V, -100,
                                        0.0, dx.data()),
                 Error);
  }
}

// ---------------------------------------------------------------- activations

const Act kActs[] = {Act::GeluExact, Act::GeluTanh, Act::Silu};

template <class T>
void check_act(Act act, int64_t n) {
  const std::string what = "act " + std::to_string(int(act)) + " n=" + std::to_string(n);
  Vec x = quantise<T>(randn(n, 71 + n, 3.0));
  if (n > 100) x[3] = -12, x[4] = 12, x[5] = -30, x[6] = 0;  // tails and zero
  const Vec up = quantise<T>(randn(n, 72)), dy = quantise<T>(randn(n, 73));
  const auto xt = cast<T>(x), upt = cast<T>(up), dyt = cast<T>(dy);
  std::vector<T> y(n), dx(n), yg(n), dg(n), du(n);
  activation_forward(act, xt.data(), y.data(), n);
  activation_backward(act, xt.data(), dyt.data(), dx.data(), n);
  gated_forward(act, xt.data(), upt.data(), yg.data(), n);
  gated_backward(act, xt.data(), upt.data(), dyt.data(), dg.data(), du.data(), n);
  Vec yr(n), dr(n), ygr(n), dgr(n), dur(n);
  for (int64_t i = 0; i < n; ++i) {
    double d;
    const double v = act_ref(act, x[i], &d);
    yr[i] = v, dr[i] = dy[i] * d, ygr[i] = v * up[i], dgr[i] = dy[i] * up[i] * d,
    dur[i] = dy[i] * v;
  }
  // Element-wise, so relative accuracy everywhere (the atol only covers values near zero). The
  // derivatives are differences of two O(1) terms (GELU's Phi(x) + x phi(x) vanishes near
  // x = -0.75), so they get an absolute allowance on the scale of the row.
  const auto [rtol, atol] = tol<T>();
  const double at = std::is_same_v<T, bf16> ? atol : rtol * 1e-3;
  const double dat = std::is_same_v<T, bf16> ? atol : rtol * 0.1;
  expect_close(widen(y), yr, rtol, at, what + " fwd");
  expect_close(widen(dx), dr, rtol, dat, what + " bwd");
  expect_close(widen(yg), ygr, rtol, at, what + " gated fwd");
  expect_close(widen(dg), dgr, rtol, dat, what + " gated dgate");
  expect_close(widen(du), dur, rtol, at, what + " gated dup");
}

TEST(Activation, MatchesReference) {
  for (Act act : kActs)
    for (int64_t n : {1, 7, 768, 32128, 100003}) {
      check_act<float>(act, n);
      check_act<double>(act, n);
      check_act<bf16>(act, n);
    }
}

TEST(Activation, BackwardMatchesFiniteDifferences) {
  const int64_t n = 64;
  Vec x = randn(n, 75, 3.0);
  const Vec up = randn(n, 76), dy = randn(n, 77);
  for (Act act : kActs) {
    const std::string what = "act " + std::to_string(int(act)) + " fd";
    Vec dx(n), dg(n), du(n);
    activation_backward(act, x.data(), dy.data(), dx.data(), n);
    gated_backward(act, x.data(), up.data(), dy.data(), dg.data(), du.data(), n);
    const auto fwd = [&](const Vec& v) {
      Vec y(n);
      activation_forward(act, v.data(), y.data(), n);
      return y;
    };
    const auto gated = [&](const Vec& g, const Vec& u) {
      Vec y(n);
      gated_forward(act, g.data(), u.data(), y.data(), n);
      return y;
    };
    expect_close(dx, fd_grad(x, dy, fwd), 1e-7, 1e-9, what + " dx");
    expect_close(dg, fd_grad(x, dy, [&](const Vec& g) { return gated(g, up); }), 1e-7, 1e-9,
                 what + " dgate");
    expect_close(du, fd_grad(up, dy, [&](const Vec& u) { return gated(x, u); }), 1e-7, 1e-9,
                 what + " dup");
  }
}

TEST(Activation, NamedWrappersMatchGeneric) {
  const Vec x = randn(1000, 81), dy = randn(1000, 82);
  const auto xf = cast<float>(x), dyf = cast<float>(dy);
  std::vector<float> a(1000), b(1000);
  gelu_forward(xf.data(), a.data(), 1000, true);
  activation_forward(Act::GeluTanh, xf.data(), b.data(), 1000);
  EXPECT_EQ(a, b);
  gelu_backward(xf.data(), dyf.data(), a.data(), 1000, false);
  activation_backward(Act::GeluExact, xf.data(), dyf.data(), b.data(), 1000);
  EXPECT_EQ(a, b);
  silu_forward(xf.data(), a.data(), 1000);
  activation_forward(Act::Silu, xf.data(), b.data(), 1000);
  EXPECT_EQ(a, b);
  silu_backward(xf.data(), dyf.data(), a.data(), 1000);
  activation_backward(Act::Silu, xf.data(), dyf.data(), b.data(), 1000);
  EXPECT_EQ(a, b);
}

// ---------------------------------------------------------------- thread-count independence

class ThreadCount : public ::testing::Test {
 protected:
  void TearDown() override { omp_set_num_threads(saved_); }
  // Runs f with 1 and then 2 OpenMP threads and returns both results.
  template <class F>
  std::pair<std::vector<float>, std::vector<float>> twice(F f) {
    omp_set_num_threads(1);
    auto a = f();
    omp_set_num_threads(2);
    auto b = f();
    return {a, b};
  }
  int saved_ = omp_get_max_threads();
};

void expect_bitwise(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what;
}

TEST_F(ThreadCount, ResultsAreBitwiseIdentical) {
  const int64_t rows = 300, n = 768;
  const auto x = cast<float>(randn(rows * n, 91)), dy = cast<float>(randn(rows * n, 92));
  const auto w = cast<float>(randn(n, 93)), b = cast<float>(randn(n, 94));
  auto [s1, s2] = twice([&] {
    std::vector<float> y(x.size()), dx(x.size());
    softmax_forward(x.data(), y.data(), rows, n, false);
    softmax_backward(y.data(), dy.data(), dx.data(), rows, n, false);
    y.insert(y.end(), dx.begin(), dx.end());
    return y;
  });
  expect_bitwise(s1, s2, "softmax");
  auto [l1, l2] = twice([&] {
    std::vector<float> y(x.size()), dx(x.size()), dw(n), db(n), mean(rows), rstd(rows);
    layer_norm_forward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(), rows, n,
                       1e-5);
    layer_norm_backward(x.data(), w.data(), mean.data(), rstd.data(), dy.data(), dx.data(),
                        dw.data(), db.data(), rows, n);
    for (auto* v : {&dx, &dw, &db, &mean, &rstd}) y.insert(y.end(), v->begin(), v->end());
    return y;
  });
  expect_bitwise(l1, l2, "layer_norm");
  auto [r1, r2] = twice([&] {
    std::vector<float> y(x.size()), dx(x.size()), dw(n), rstd(rows);
    rms_norm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, n, 1e-6);
    rms_norm_backward(x.data(), w.data(), rstd.data(), dy.data(), dx.data(), dw.data(), rows, n);
    for (auto* v : {&dx, &dw, &rstd}) y.insert(y.end(), v->begin(), v->end());
    return y;
  });
  expect_bitwise(r1, r2, "rms_norm");
  const int64_t V = 32128, crow = 16;
  const auto logits = cast<float>(randn(crow * V, 95, 3.0));
  const auto t = targets(crow, V, 96, -100);
  auto [c1, c2] = twice([&] {
    std::vector<float> loss(crow), lse(crow), dl(crow, 0.5f), dx(logits.size());
    cross_entropy_forward(logits.data(), t.data(), crow, V, -100, 0.1, loss.data(), lse.data());
    cross_entropy_backward(logits.data(), t.data(), lse.data(), dl.data(), crow, V, -100, 0.1,
                           dx.data());
    dx.insert(dx.end(), loss.begin(), loss.end());
    return dx;
  });
  expect_bitwise(c1, c2, "cross_entropy");
  auto [a1, a2] = twice([&] {
    std::vector<float> y(x.size()), dg(x.size()), du(x.size());
    gated_forward(Act::GeluTanh, x.data(), dy.data(), y.data(), rows * n);
    gated_backward(Act::Silu, x.data(), dy.data(), dy.data(), dg.data(), du.data(), rows * n);
    for (auto* v : {&dg, &du}) y.insert(y.end(), v->begin(), v->end());
    return y;
  });
  expect_bitwise(a1, a2, "activations");
}

}  // namespace
}  // namespace strata::cpu
