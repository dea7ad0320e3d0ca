// Fused attention forward+backward against the unfused path a framework would otherwise take
// (OpenBLAS sgemm for the score and value products, a plain softmax loop between them), measured
// in the same run. Prints one JSON line per (causal, threads) configuration.
//
//   strata_bench_attention [reps] [B H L D]
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "bench/bench_flags.h"
#include "core/kernels/cpu/attention_kernels.h"
#include "core/median_time.h"

extern "C" void openblas_set_num_threads(int);

namespace {

double median_ms(int reps, const std::function<void()>& f) {
  return 1e3 * strata::median_seconds(reps, 1, f);
}

struct Shape {
  int B, H, L, D;
  size_t elems() const { return size_t(B) * H * L * D; }
};

// The unfused path per head: S = QK^T (sgemm), masked softmax in place, O = PV (sgemm); backward
// dV = P^T dO, dP = dO V^T, dS = P (dP - rowsum(dO O)), dQ = s dS K, dK = s dS^T Q. The score
// matrix is materialised per head (one L x L buffer per thread), as an unfused op would.
struct Naive {
  Shape s;
  bool causal;
  std::vector<std::vector<float>> p, dp;  // per-thread L x L buffers

  Naive(Shape sh, bool c, int threads) : s(sh), causal(c), p(threads), dp(threads) {
    for (auto& x : p) x.resize(size_t(s.L) * s.L);
    for (auto& x : dp) x.resize(size_t(s.L) * s.L);
  }

  void softmax(float* pp, const float scale) const {
    const int L = s.L;
    for (int i = 0; i < L; ++i) {
      float* r = pp + size_t(i) * L;
      const int n = causal ? i + 1 : L;
      float m = -std::numeric_limits<float>::infinity();
      for (int j = 0; j < n; ++j) m = std::max(m, r[j] * scale);
      float sum = 0;
      for (int j = 0; j < n; ++j) sum += (r[j] = std::exp(r[j] * scale - m));
      const float inv = 1.0f / sum;
      for (int j = 0; j < n; ++j) r[j] *= inv;
      for (int j = n; j < L; ++j) r[j] = 0;
    }
  }

  void forward(const float* q, const float* k, const float* v, float* o) {
    const int L = s.L, D = s.D;
    const float scale = 1.0f / std::sqrt(float(D));
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < s.B * s.H; ++bh) {
      float* pp = p[omp_get_thread_num()].data();
      const size_t off = size_t(bh) * L * D;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, 1.0f, q + off, D, k + off, D,
                  0.0f, pp, L);
      softmax(pp, scale);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, D, L, 1.0f, pp, L, v + off, D, 0.0f,
                  o + off, D);
    }
  }

  void backward(const float* q, const float* k, const float* v, const float* o, const float* dout,
                float* dq, float* dk, float* dv) {
    const int L = s.L, D = s.D;
    const float scale = 1.0f / std::sqrt(float(D));
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < s.B * s.H; ++bh) {
      float* pp = p[omp_get_thread_num()].data();
      float* dpp = dp[omp_get_thread_num()].data();
      const size_t off = size_t(bh) * L * D;
      // Recompute P (an unfused autograd would have saved it; recomputing keeps memory equal).
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, 1.0f, q + off, D, k + off, D,
                  0.0f, pp, L);
      softmax(pp, scale);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, D, L, 1.0f, pp, L, dout + off, D,
                  0.0f, dv + off, D);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, D, 1.0f, dout + off, D, v + off, D,
                  0.0f, dpp, L);
      for (int i = 0; i < L; ++i) {
        float di = 0;
        for (int d = 0; d < D; ++d)
          di += dout[off + size_t(i) * D + d] * o[off + size_t(i) * D + d];
        float* pr = pp + size_t(i) * L;
        float* dr = dpp + size_t(i) * L;
        for (int j = 0; j < L; ++j) dr[j] = pr[j] * (dr[j] - di);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, D, L, scale, dpp, L, k + off, D,
                  0.0f, dq + off, D);
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, D, L, scale, dpp, L, q + off, D, 0.0f,
                  dk + off, D);
    }
  }
};

}  // namespace

int main(int argc, char** argv) {
  int reps = 7;
  Shape s{4, 12, 512, 64};
  strata::bench::BenchFlags flags("strata_bench_attention",
                                  "Fused attention forward + backward against sgemm + softmax.");
  flags.add("reps", &reps, "timed repetitions", 1, 100000);
  flags.add("batch", &s.B, "batch", 1, 1 << 16);
  flags.add("heads", &s.H, "heads", 1, 1 << 16);
  flags.add("len", &s.L, "sequence length", 1, 1 << 20);
  flags.add("dim", &s.D, "head dimension", 1, 1 << 12);
  flags.parse(argc, argv);
  std::mt19937 gen(42);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  auto rnd = [&] {
    std::vector<float> x(s.elems());
    for (auto& e : x) e = u(gen);
    return x;
  };
  const auto q = rnd(), k = rnd(), v = rnd(), dout = rnd();
  std::vector<float> out(s.elems()), dq(s.elems()), dk(s.elems()), dv(s.elems());
  std::vector<float> lse(size_t(s.B) * s.H * s.L);
  const int64_t hs = int64_t(s.L) * s.D;

  strata::cpu::AttentionArgs<float> a;
  a.batch = s.B;
  a.heads = s.H;
  a.q_len = a.kv_len = s.L;
  a.head_dim = s.D;
  a.q = q.data();
  a.k = k.data();
  a.v = v.data();
  a.q_stride = a.k_stride = a.v_stride = {s.H * hs, hs, s.D};
  a.scale = 1.0 / std::sqrt(double(s.D));

  for (bool causal : {false, true}) {
    for (int threads : {1, 2}) {
      // The benchmark owns the thread setting: OpenMP for both paths, OpenBLAS single-threaded
      // inside the per-head loop so that both paths split heads the same way.
      omp_set_num_threads(threads);
      openblas_set_num_threads(1);
      a.causal = causal;
      const double fwd =
          median_ms(reps, [&] { strata::cpu::attention_forward(a, out.data(), lse.data()); });
      const double bwd = median_ms(reps, [&] {
        strata::cpu::attention_backward(a, out.data(), lse.data(), dout.data(), dq.data(),
                                        dk.data(), dv.data(), static_cast<float*>(nullptr));
      });
      Naive naive(s, causal, threads);
      std::vector<float> o2(s.elems()), dq2(s.elems()), dk2(s.elems()), dv2(s.elems());
      const double nfwd =
          median_ms(reps, [&] { naive.forward(q.data(), k.data(), v.data(), o2.data()); });
      const double nbwd = median_ms(reps, [&] {
        naive.backward(q.data(), k.data(), v.data(), o2.data(), dout.data(), dq2.data(), dk2.data(),
                       dv2.data());
      });
      double max_diff = 0;
      for (size_t i = 0; i < out.size(); ++i)
        max_diff = std::max(max_diff, double(std::abs(out[i] - o2[i])));
      for (size_t i = 0; i < dq.size(); ++i)
        max_diff = std::max(max_diff, double(std::abs(dq[i] - dq2[i])));
      // Useful flops: 2 products forward, 5 backward (P recomputed), halved when causal.
      const double head_flops = 2.0 * s.L * s.L * s.D * (causal ? 0.5 : 1.0);
      const double fwd_flops = 2 * head_flops * s.B * s.H, bwd_flops = 5 * head_flops * s.B * s.H;
      std::printf(
          "{\"bench\":\"attention_f32\",\"shape\":[%d,%d,%d,%d],\"causal\":%s,\"threads\":%d,"
          "\"fwd_ms\":%.2f,\"bwd_ms\":%.2f,\"total_ms\":%.2f,\"fwd_gflops\":%.1f,\"bwd_gflops\":%."
          "1f,"
          "\"ref_naive_sgemm_fwd_ms\":%.2f,\"ref_naive_sgemm_bwd_ms\":%.2f,"
          "\"ref_naive_sgemm_total_ms\":%.2f,\"speedup_vs_naive\":%.2f,\"max_abs_diff_vs_naive\":%."
          "2e,"
          "\"reps\":%d}\n",
          s.B, s.H, s.L, s.D, causal ? "true" : "false", threads, fwd, bwd, fwd + bwd,
          fwd_flops / fwd * 1e-6, bwd_flops / bwd * 1e-6, nfwd, nbwd, nfwd + nbwd,
          (nfwd + nbwd) / (fwd + bwd), max_diff, reps);
      std::fflush(stdout);
    }
  }
  return 0;
}
