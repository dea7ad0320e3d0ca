// Fused attention kernels against a naive f64 reference that materialises every score, plus a
// finite-difference check of the reference-free gradients and a thread-count determinism check.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/kernels/cpu/attention_kernels.h"

namespace strata::cpu {
namespace {

enum class BiasKind {
  kNone,
  kFull,
  kPerHead,     // [1, H, Lq, Lk], T5's relative position bias
  kPerBatch,    // [B, 1, Lq, Lk]
  kTransposed,  // [B, H, Lq, Lk] stored key-major, so the kernels must gather it
};

struct Case {
  int64_t B, H, Lq, Lk, D;
  bool unit_scale = false;  // scale 1 (T5) instead of 1/sqrt(D)
  BiasKind bias = BiasKind::kNone;
  bool key_mask = false;  // batch 0 keeps a random subset, the last batch hides every key
  bool causal = false;
  bool strided = false;  // q, k, v stored [B, L, H, D]
};

std::string name(const Case& c) {
  return "B" + std::to_string(c.B) + "H" + std::to_string(c.H) + "Lq" + std::to_string(c.Lq) +
         "Lk" + std::to_string(c.Lk) + "D" + std::to_string(c.D) + (c.unit_scale ? "_s1" : "") +
         "_bias" + std::to_string(static_cast<int>(c.bias)) + (c.key_mask ? "_mask" : "") +
         (c.causal ? "_causal" : "") + (c.strided ? "_strided" : "");
}

// All inputs in f64; the float tests round them to float first and give the reference the
// rounded values.
struct Problem {
  Case c;
  std::vector<double> q, k, v, bias, dout;
  std::vector<uint8_t> mask;
  std::array<int64_t, 3> q_stride, k_stride, v_stride;
  std::array<int64_t, 4> bias_stride{};
  std::array<int64_t, 2> bias_lead{};  // logical leading dims of bias / dbias

  int64_t qi(int64_t b, int64_t h, int64_t i) const {
    return b * q_stride[0] + h * q_stride[1] + i * q_stride[2];
  }
  int64_t ki(const std::array<int64_t, 3>& s, int64_t b, int64_t h, int64_t j) const {
    return b * s[0] + h * s[1] + j * s[2];
  }
  int64_t bi(int64_t b, int64_t h, int64_t i, int64_t j) const {
    return b * bias_stride[0] + h * bias_stride[1] + i * bias_stride[2] + j * bias_stride[3];
  }
  double scale() const { return c.unit_scale ? 1.0 : 1.0 / std::sqrt(double(c.D)); }
};

std::array<int64_t, 3> layout(const Case& c, int64_t L) {
  if (c.strided) return {L * c.H * c.D, c.D, c.H * c.D};
  return {c.H * L * c.D, L * c.D, c.D};
}

Problem make_problem(const Case& c, unsigned seed) {
  Problem p;
  p.c = c;
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  auto fill = [&](std::vector<double>& x, int64_t n, double amp) {
    x.resize(n);
    for (auto& e : x) e = amp * u(gen);
  };
  p.q_stride = layout(c, c.Lq);
  p.k_stride = layout(c, c.Lk);
  p.v_stride = layout(c, c.Lk);
  // Amplitude 2 gives peaked softmaxes (scores up to ~|4 D| unscaled) as well as flat ones.
  fill(p.q, c.B * c.H * c.Lq * c.D, 1.5);
  fill(p.k, c.B * c.H * c.Lk * c.D, 1.5);
  fill(p.v, c.B * c.H * c.Lk * c.D, 1.0);
  fill(p.dout, c.B * c.H * c.Lq * c.D, 1.0);
  const int64_t LL = c.Lq * c.Lk;
  switch (c.bias) {
    case BiasKind::kNone:
      break;
    case BiasKind::kFull:
      p.bias_lead = {c.B, c.H};
      p.bias_stride = {c.H * LL, LL, c.Lk, 1};
      break;
    case BiasKind::kPerHead:
      p.bias_lead = {1, c.H};
      p.bias_stride = {0, LL, c.Lk, 1};
      break;
    case BiasKind::kPerBatch:
      p.bias_lead = {c.B, 1};
      p.bias_stride = {LL, 0, c.Lk, 1};
      break;
    case BiasKind::kTransposed:
      p.bias_lead = {c.B, c.H};
      p.bias_stride = {c.H * LL, LL, 1, c.Lq};
      break;
  }
  if (c.bias != BiasKind::kNone) fill(p.bias, p.bias_lead[0] * p.bias_lead[1] * LL, 2.0);
  if (c.key_mask) {
    p.mask.resize(c.B * c.Lk);
    for (int64_t b = 0; b < c.B; ++b)
      for (int64_t j = 0; j < c.Lk; ++j)
        p.mask[b * c.Lk + j] = (b == c.B - 1 && c.B > 1) ? 0 : (gen() % 4 != 0 || j == 0);
  }
  return p;
}

struct Grads {
  std::vector<double> out, lse, dq, dk, dv, dbias;
};

// Naive f64 attention with the full score matrix, and its analytic gradients.
Grads reference(const Problem& p) {
  const Case& c = p.c;
  Grads g;
  g.out.assign(c.B * c.H * c.Lq * c.D, 0);
  g.lse.assign(c.B * c.H * c.Lq, 0);
  g.dq.assign(c.B * c.H * c.Lq * c.D, 0);
  g.dk.assign(c.B * c.H * c.Lk * c.D, 0);
  g.dv.assign(c.B * c.H * c.Lk * c.D, 0);
  g.dbias.assign(p.bias.size(), 0);
  const double scale = p.scale();
  std::vector<double> s(c.Lk), pr(c.Lk), dp(c.Lk);
  std::vector<char> vis(c.Lk);
  for (int64_t b = 0; b < c.B; ++b)
    for (int64_t h = 0; h < c.H; ++h)
      for (int64_t i = 0; i < c.Lq; ++i) {
        const int64_t bh = b * c.H + h;
        double m = -std::numeric_limits<double>::infinity();
        for (int64_t j = 0; j < c.Lk; ++j) {
          vis[j] =
              (!c.causal || j <= i + (c.Lk - c.Lq)) && (p.mask.empty() || p.mask[b * c.Lk + j]);
          double x = 0;
          for (int64_t d = 0; d < c.D; ++d)
            x += p.q[p.qi(b, h, i) + d] * p.k[p.ki(p.k_stride, b, h, j) + d];
          x *= scale;
          if (!p.bias.empty()) x += p.bias[p.bi(b, h, i, j)];
          s[j] = x;
          if (vis[j]) m = std::max(m, x);
        }
        if (m == -std::numeric_limits<double>::infinity()) {
          g.lse[bh * c.Lq + i] = m;
          continue;  // no visible key: out, gradients 0
        }
        double l = 0;
        for (int64_t j = 0; j < c.Lk; ++j) l += vis[j] ? std::exp(s[j] - m) : 0.0;
        g.lse[bh * c.Lq + i] = m + std::log(l);
        const double* dout = &p.dout[(bh * c.Lq + i) * c.D];
        double* out = &g.out[(bh * c.Lq + i) * c.D];
        for (int64_t j = 0; j < c.Lk; ++j) {
          pr[j] = vis[j] ? std::exp(s[j] - m) / l : 0.0;
          const double* vj = &p.v[p.ki(p.v_stride, b, h, j)];
          double x = 0;
          for (int64_t d = 0; d < c.D; ++d) {
            out[d] += pr[j] * vj[d];
            x += dout[d] * vj[d];
          }
          dp[j] = x;
        }
        double di = 0;
        for (int64_t j = 0; j < c.Lk; ++j) di += pr[j] * dp[j];
        for (int64_t j = 0; j < c.Lk; ++j) {
          const double ds = pr[j] * (dp[j] - di);
          if (!p.bias.empty()) {
            const int64_t bb = p.bias_lead[0] == 1 ? 0 : b, hh = p.bias_lead[1] == 1 ? 0 : h;
            g.dbias[((bb * p.bias_lead[1] + hh) * c.Lq + i) * c.Lk + j] += ds;
          }
          const int64_t kj = p.ki(p.k_stride, b, h, j);
          for (int64_t d = 0; d < c.D; ++d) {
            g.dq[(bh * c.Lq + i) * c.D + d] += scale * ds * p.k[kj + d];
            g.dk[(bh * c.Lk + j) * c.D + d] += scale * ds * p.q[p.qi(b, h, i) + d];
            g.dv[(bh * c.Lk + j) * c.D + d] += pr[j] * dout[d];
          }
        }
      }
  return g;
}

template <class T>
struct KernelRun {
  std::vector<T> q, k, v, bias, dout;
  std::vector<T> out, lse, dq, dk, dv, dbias;
  AttentionArgs<T> args;
};

template <class T>
KernelRun<T> run_kernels(const Problem& p, bool backward = true) {
  const Case& c = p.c;
  KernelRun<T> r;
  auto cast = [](const std::vector<double>& x) { return std::vector<T>(x.begin(), x.end()); };
  r.q = cast(p.q);
  r.k = cast(p.k);
  r.v = cast(p.v);
  r.bias = cast(p.bias);
  r.dout = cast(p.dout);
  AttentionArgs<T>& a = r.args;
  a.batch = c.B;
  a.heads = c.H;
  a.q_len = c.Lq;
  a.kv_len = c.Lk;
  a.head_dim = c.D;
  a.q = r.q.data();
  a.q_stride = p.q_stride;
  a.k = r.k.data();
  a.k_stride = p.k_stride;
  a.v = r.v.data();
  a.v_stride = p.v_stride;
  a.scale = p.scale();
  if (!r.bias.empty()) {
    a.bias = r.bias.data();
    a.bias_stride = p.bias_stride;
  }
  if (!p.mask.empty()) {
    a.key_mask = p.mask.data();
    a.key_mask_stride = c.Lk;
  }
  a.causal = c.causal;
  r.out.assign(c.B * c.H * c.Lq * c.D, T(-7));  // garbage: the kernels must overwrite
  r.lse.assign(c.B * c.H * c.Lq, T(-7));
  r.dq.assign(c.B * c.H * c.Lq * c.D, T(-7));
  r.dk.assign(c.B * c.H * c.Lk * c.D, T(-7));
  r.dv.assign(c.B * c.H * c.Lk * c.D, T(-7));
  r.dbias.assign(r.bias.size(), T(-7));
  attention_forward(a, r.out.data(), r.lse.data());
  if (!backward) return r;
  attention_backward(a, r.out.data(), r.lse.data(), r.dout.data(), r.dq.data(), r.dk.data(),
                     r.dv.data(), r.bias.empty() ? nullptr : r.dbias.data());
  return r;
}

// Largest error relative to the largest reference magnitude (errors of a sum scale with its
// terms, not with the possibly cancelled result), floored at 0.1 so that gradients which vanish
// exactly (dq and dk with a single key) are held to an absolute bound instead.
template <class T>
double rel_err(const std::vector<T>& got, const std::vector<double>& want) {
  double num = 0, den = 0.1;
  for (size_t i = 0; i < want.size(); ++i) {
    if (std::isinf(want[i])) {
      if (!(std::isinf(double(got[i])) && (got[i] < 0) == (want[i] < 0))) return INFINITY;
      continue;
    }
    if (!std::isfinite(double(got[i]))) return INFINITY;
    num = std::max(num, std::abs(double(got[i]) - want[i]));
    den = std::max(den, std::abs(want[i]));
  }
  return num / den;
}

Problem round_to_float(Problem p) {
  for (auto* x : {&p.q, &p.k, &p.v, &p.bias, &p.dout})
    for (auto& e : *x) e = double(float(e));
  return p;
}

template <class T>
void check_against_reference(const Case& c, double tol) {
  SCOPED_TRACE(name(c));
  Problem p = make_problem(c, 1234);
  if (std::is_same_v<T, float>) p = round_to_float(p);
  const Grads ref = reference(p);
  const KernelRun<T> r = run_kernels<T>(p);
  EXPECT_LE(rel_err(r.out, ref.out), tol) << "out";
  EXPECT_LE(rel_err(r.lse, ref.lse), tol) << "lse";
  EXPECT_LE(rel_err(r.dq, ref.dq), tol) << "dq";
  EXPECT_LE(rel_err(r.dk, ref.dk), tol) << "dk";
  EXPECT_LE(rel_err(r.dv, ref.dv), tol) << "dv";
  if (!p.bias.empty()) {
    EXPECT_LE(rel_err(r.dbias, ref.dbias), tol) << "dbias";
  }
}

std::vector<Case> reference_cases() {
  std::vector<Case> cs;
  // Lengths around the 64-wide blocks, Lq != Lk both ways, D with and without 16-lane tails.
  for (int64_t D : {8, 64, 80})
    for (auto [lq, lk] : std::vector<std::pair<int64_t, int64_t>>{
             {1, 1}, {17, 17}, {1, 129}, {129, 17}, {129, 300}, {300, 129}})
      for (bool causal : {false, true})
        cs.push_back({2, 2, lq, lk, D, false, BiasKind::kNone, false, causal});
  // Every feature, alone and together.
  cs.push_back({2, 3, 65, 130, 64, true, BiasKind::kPerHead});
  cs.push_back({2, 3, 65, 130, 64, false, BiasKind::kFull});
  cs.push_back({3, 2, 70, 70, 16, false, BiasKind::kPerBatch});
  cs.push_back({3, 2, 70, 150, 24, false, BiasKind::kNone, true});
  cs.push_back(
      {2, 2, 150, 100, 80, false, BiasKind::kNone, false, true});  // Lq > Lk causal: empty rows
  cs.push_back({2, 2, 64, 300, 40, false, BiasKind::kNone, false, false, true});
  cs.push_back({2, 3, 129, 300, 64, true, BiasKind::kPerHead, true, true, true});
  cs.push_back({3, 2, 17, 129, 8, false, BiasKind::kFull, true, true, true});
  cs.push_back({2, 2, 300, 300, 64, false, BiasKind::kPerBatch, true, true, false});
  // A head dim that is not a multiple of the 8 lanes, and a bias with strided keys.
  cs.push_back({2, 2, 33, 70, 13, false, BiasKind::kTransposed, true, true, true});
  cs.push_back({1, 3, 129, 65, 20, true, BiasKind::kTransposed, false, false, false});
  return cs;
}

TEST(AttentionKernels, DoubleMatchesReference) {
  for (const Case& c : reference_cases()) check_against_reference<double>(c, 1e-12);
}

TEST(AttentionKernels, FloatMatchesReference) {
  for (const Case& c : reference_cases()) check_against_reference<float>(c, 1e-5);
}

TEST(AttentionKernels, FullyMaskedRowsAreZeroWithNegInfLse) {
  Case c{2, 2, 70, 40, 16, false, BiasKind::kPerHead, true, true};  // batch 1: every key padded
  Problem p = make_problem(c, 7);
  const KernelRun<float> r = run_kernels<float>(p);
  for (int64_t h = 0; h < c.H; ++h)
    for (int64_t i = 0; i < c.Lq; ++i) {
      const int64_t row = (1 * c.H + h) * c.Lq + i;
      EXPECT_EQ(r.lse[row], -std::numeric_limits<float>::infinity());
      for (int64_t d = 0; d < c.D; ++d) {
        EXPECT_EQ(r.out[row * c.D + d], 0.0f);
        EXPECT_EQ(r.dq[row * c.D + d], 0.0f);
      }
    }
  for (float x : r.dk) EXPECT_TRUE(std::isfinite(x));
  for (float x : r.dbias) EXPECT_TRUE(std::isfinite(x));
  // Causal with Lq > Lk: the first Lq - Lk queries see no key, in every batch.
  for (int64_t i = 0; i < c.Lq - c.Lk; ++i)
    EXPECT_EQ(r.lse[i], -std::numeric_limits<float>::infinity());
}

// Central differences of L = sum(out * dout) in f64, against the kernels' gradients.
TEST(AttentionKernels, GradientsMatchFiniteDifferences) {
  // Thousands of tiny calls: one thread avoids paying a team start-up on each.
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  for (const Case& c : {Case{2, 2, 5, 7, 8, true, BiasKind::kPerHead, true, true, true},
                        Case{1, 2, 9, 6, 4, false, BiasKind::kFull, false, false, false}}) {
    SCOPED_TRACE(name(c));
    Problem p = make_problem(c, 99);
    if (c.key_mask) {  // keep the last batch alive, hide one key of each
      p.mask.assign(p.mask.size(), 1);
      for (int64_t b = 0; b < c.B; ++b) p.mask[b * c.Lk + 1] = 0;
    }
    const KernelRun<double> r = run_kernels<double>(p);
    auto loss = [&](const Problem& pp) {
      const KernelRun<double> rr = run_kernels<double>(pp, /*backward=*/false);
      double s = 0;
      for (size_t i = 0; i < rr.out.size(); ++i) s += rr.out[i] * pp.dout[i];
      return s;
    };
    const double eps = 1e-6;
    auto check = [&](std::vector<double> Problem::*field, auto index_of_grad, const char* what) {
      std::vector<double>& x = p.*field;
      double worst = 0, scale = 1e-12;
      for (size_t e = 0; e < x.size(); ++e) {
        const double keep = x[e];
        x[e] = keep + eps;
        const double up = loss(p);
        x[e] = keep - eps;
        const double down = loss(p);
        x[e] = keep;
        const double fd = (up - down) / (2 * eps);
        const double an = index_of_grad(e);
        worst = std::max(worst, std::abs(fd - an));
        scale = std::max(scale, std::abs(an));
      }
      EXPECT_LE(worst / scale, 1e-7) << what;
    };
    // Maps a storage offset of q/k/v (possibly [B, L, H, D]) to the contiguous gradient index.
    auto grad_at = [&](const std::vector<double>& g, const std::array<int64_t, 3>& st, int64_t L) {
      return [&, st, L](size_t e) {
        const int64_t b = e / st[0], rem = e % st[0];
        const int64_t h = c.strided ? rem % st[2] / c.D : rem / st[1];
        const int64_t i = c.strided ? rem / st[2] : rem % st[1] / c.D;
        const int64_t d = e % c.D;
        return g[((b * c.H + h) * L + i) * c.D + d];
      };
    };
    check(&Problem::q, grad_at(r.dq, p.q_stride, c.Lq), "dq");
    check(&Problem::k, grad_at(r.dk, p.k_stride, c.Lk), "dk");
    check(&Problem::v, grad_at(r.dv, p.v_stride, c.Lk), "dv");
    check(
        &Problem::bias, [&](size_t e) { return r.dbias[e]; }, "dbias");
  }
  omp_set_num_threads(saved);
}

// Same bits for 1 and 2 threads, including the layouts that make the backward switch strategy
// between whole heads per thread and key blocks per thread.
TEST(AttentionKernels, BitwiseIndependentOfThreadCount) {
  const int saved = omp_get_max_threads();
  for (const Case& c : {Case{1, 1, 200, 300, 64, false, BiasKind::kFull, true, true},
                        Case{2, 3, 130, 190, 64, false, BiasKind::kPerHead, true, false, true},
                        Case{3, 1, 100, 100, 80, true, BiasKind::kPerBatch, false, true},
                        Case{2, 2, 129, 129, 64}}) {
    SCOPED_TRACE(name(c));
    const Problem p = make_problem(c, 5);
    omp_set_num_threads(1);
    const KernelRun<float> one = run_kernels<float>(p);
    omp_set_num_threads(2);
    const KernelRun<float> two = run_kernels<float>(p);
    omp_set_num_threads(3);
    const KernelRun<float> three = run_kernels<float>(p);
    for (const KernelRun<float>* other : {&two, &three}) {
      for (auto f : {&KernelRun<float>::out, &KernelRun<float>::lse, &KernelRun<float>::dq,
                     &KernelRun<float>::dk, &KernelRun<float>::dv, &KernelRun<float>::dbias}) {
        const auto& x = one.*f;
        const auto& y = other->*f;
        ASSERT_EQ(x.size(), y.size());
        if (x.empty()) continue;  // no bias, no dbias
        EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(float)));
      }
    }
  }
  omp_set_num_threads(saved);
}

TEST(AttentionKernels, RejectsBadArguments) {
  AttentionArgs<float> a;
  a.batch = 1;
  a.heads = 1;
  a.q_len = 2;
  a.kv_len = 2;
  a.head_dim = 0;
  std::vector<float> buf(64);
  a.q = a.k = a.v = buf.data();
  EXPECT_THROW(attention_forward(a, buf.data(), buf.data()), Error);
  a.head_dim = 4;
  EXPECT_THROW(attention_forward<float>(a, nullptr, buf.data()), Error);
  EXPECT_THROW(attention_backward(a, buf.data(), buf.data(), buf.data(), buf.data(), buf.data(),
                                  buf.data(), buf.data()),
               Error);  // dbias without bias
}

}  // namespace
}  // namespace strata::cpu
