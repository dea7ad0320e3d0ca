// strata_bench_gemm: our GEMM kernels against OpenBLAS and the measured FMA peak, as JSON lines.
// Every figure is the median of kReps timed runs after kWarmup untimed ones, timed alternately
// with its reference (OpenBLAS sgemm for f32 rows, the same kernel's f32 sgemm for bf16 rows);
// the peak, with the row's thread count, is measured just before each row: the f32 FMA peak with
// the widest vectors the CPU has for f32 rows, AVX512-BF16's dot-product peak for bf16 rows where
// the CPU has it (else the f32 peak). A "peak" line per thread count gives the zmm and ymm FMA
// figures and the bf16 one. Rows thus read as ratios even on a machine shared with other jobs. The
// openblas row compares OpenBLAS with itself (run-to-run noise). Debian's OpenBLAS has no bf16
// GEMM: its bf16 row widens to f32.
#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "bench/bench_flags.h"
#include "core/cpu_features.h"
#include "core/fma_peak.h"
#include "core/kernels/cpu/gemm/gemm.h"

namespace {

using strata::bf16;
using namespace strata::gemm;

constexpr int kWarmup = 2;
constexpr int kReps = 7;

double seconds(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Median seconds of f and of its reference, timed alternately so that load from other jobs on
// the machine falls on both alike.
std::pair<double, double> paired_medians(const std::function<void()>& f,
                                         const std::function<void()>& ref) {
  for (int i = 0; i < kWarmup; ++i) {
    f();
    ref();
  }
  std::vector<double> tf, tr;
  for (int i = 0; i < kReps; ++i) {
    tf.push_back(seconds(f));
    tr.push_back(seconds(ref));
  }
  return {median(tf), median(tr)};
}

struct Shape {
  int64_t m, n, k;
};

}  // namespace

int main(int argc, char** argv) {
  std::string only_threads;
  strata::bench::BenchFlags flags(
      "strata_bench_gemm",
      "f32 and bf16 GEMM of every kernel against OpenBLAS and the measured peaks; JSON lines.");
  flags.add("threads", &only_threads, "run only this thread count", {"1", "2"});
  flags.parse(argc, argv);
  const Shape shapes[] = {{4096, 768, 768}, {4096, 3072, 768}, {4096, 768, 3072}};
  const Kernel kernels[] = {Kernel::Avx2, Kernel::Dnnl, Kernel::OpenBlas};
  std::printf("{\"bench\":\"gemm_info\",\"cpu_features\":\"%s\",\"auto\":\"%s\"}\n",
              strata::cpu_features_string().c_str(),
              std::string(kernel_name(resolve(Kernel::Auto))).c_str());
  std::mt19937 gen(7);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);

  for (int threads : {1, 2}) {
    if (!only_threads.empty() && std::to_string(threads) != only_threads) continue;
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
    {
      // The references every row below is a fraction of: the f32 FMA peak with zmm and ymm
      // (the widest is "peak_gflops" below), and AVX512-BF16's dot-product peak.
      const strata::FmaPeak p = strata::measure_fma_peak(false);
      std::printf(
          "{\"bench\":\"peak\",\"threads\":%d,\"zmm_gflops\":%.1f,\"ymm_gflops\":%.1f,"
          "\"widest\":\"%s\",\"bf16_dot_gflops\":%.1f}\n",
          threads, p.zmm_gflops, p.ymm_gflops, p.widest(), strata::measure_bf16_dot_peak_gflops());
      std::fflush(stdout);
    }
    for (const Shape& s : shapes) {
      std::vector<float> a(size_t(s.m * s.k)), b(size_t(s.k * s.n)), c(size_t(s.m * s.n));
      for (auto& x : a) x = dist(gen);
      for (auto& x : b) x = dist(gen);
      std::vector<bf16> ah(a.size()), bh(b.size());
      for (size_t i = 0; i < a.size(); ++i) ah[i] = bf16(a[i]);
      for (size_t i = 0; i < b.size(); ++i) bh[i] = bf16(b[i]);
      const double flop = 2.0 * double(s.m) * double(s.n) * double(s.k);

      auto f32_run = [&](Kernel kk) {
        return [&, kk] {
          sgemm(kk, Trans::No, Trans::No, s.m, s.n, s.k, 1.0f, a.data(), s.k, b.data(), s.n, 0.0f,
                c.data(), s.n);
        };
      };
      auto bf16_run = [&](Kernel kk) {
        return [&, kk] {
          bf16gemm(kk, Trans::No, Trans::No, s.m, s.n, s.k, 1.0f, ah.data(), s.k, bh.data(), s.n,
                   0.0f, c.data(), s.n);
        };
      };

      for (Kernel kk : kernels) {
        if (!kernel_available(kk)) continue;
        const double peak = strata::measure_fma_peak_gflops(false);
        const auto [t, t_ref] = paired_medians(f32_run(kk), f32_run(Kernel::OpenBlas));
        const double g = flop / t / 1e9, openblas = flop / t_ref / 1e9;
        std::printf(
            "{\"bench\":\"gemm\",\"dtype\":\"f32\",\"m\":%ld,\"n\":%ld,\"k\":%ld,\"threads\":%d,"
            "\"kernel\":\"%s\",\"gflops\":%.1f,\"openblas_gflops\":%.1f,\"peak_gflops\":%.1f,"
            "\"vs_peak\":%.3f,\"vs_openblas\":%.3f}\n",
            long(s.m), long(s.n), long(s.k), threads, std::string(kernel_name(kk)).c_str(), g,
            openblas, peak, g / peak, g / openblas);
        std::fflush(stdout);
      }
      // bf16 inputs, f32 accumulate/output, against f32 sgemm with the same kernel.
      for (Kernel kk : kernels) {
        if (!kernel_available(kk)) continue;
        // A bf16 GEMM's ceiling: the bf16 dot-product peak where the CPU has one, else the f32
        // FMA peak (the inputs are widened to f32).
        const double dot_peak = strata::measure_bf16_dot_peak_gflops();
        const double peak = dot_peak > 0 ? dot_peak : strata::measure_fma_peak_gflops(false);
        const auto [t16, t32] = paired_medians(bf16_run(kk), f32_run(kk));
        const double g16 = flop / t16 / 1e9, g32 = flop / t32 / 1e9;
        std::printf(
            "{\"bench\":\"gemm\",\"dtype\":\"bf16\",\"m\":%ld,\"n\":%ld,\"k\":%ld,\"threads\":%d,"
            "\"kernel\":\"%s\",\"code\":\"%s\",\"gflops\":%.1f,\"f32_gflops\":%.1f,"
            "\"vs_f32\":%.3f,\"peak\":\"%s\",\"peak_gflops\":%.1f,\"vs_peak\":%.3f}\n",
            long(s.m), long(s.n), long(s.k), threads, std::string(kernel_name(kk)).c_str(),
            describe(kk).c_str(), g16, g32, g16 / g32, dot_peak > 0 ? "bf16_dot" : "fma_f32", peak,
            g16 / peak);
        std::fflush(stdout);
      }
    }
  }
  return 0;
}
