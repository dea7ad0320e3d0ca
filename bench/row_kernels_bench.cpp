// Raw row-kernel timings (forward + backward, f32) on the shapes of bench/torch_ops_reference.py,
// with 1 and 2 OpenMP threads. Each line carries a same-run reference: the time memcpy takes to
// move the bytes the kernels must read and write, so figures read as a multiple of bandwidth.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_flags.h"
#include "core/kernels/cpu/activation_kernels.h"
#include "core/kernels/cpu/cross_entropy_kernels.h"
#include "core/kernels/cpu/norm_kernels.h"
#include "core/kernels/cpu/softmax_kernels.h"

namespace {

using namespace strata::cpu;

std::vector<float> randn(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 gen(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(gen);
  return v;
}

double median_ms(const std::function<void()>& fn, int warmup, int reps) {
  for (int i = 0; i < warmup; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::nth_element(t.begin(), t.begin() + t.size() / 2, t.end());
  return t[t.size() / 2];
}

// memcpy of `bytes` (split into two copies of half when that is all the buffer allows), on the
// same threads count as the kernels.
double memcpy_ms(size_t bytes, int reps) {
  std::vector<char> a(bytes, 1), b(bytes);
  return median_ms(
      [&] {
        const int nt = omp_get_max_threads();
#pragma omp parallel for num_threads(nt)
        for (int t = 0; t < nt; ++t) {
          const size_t lo = bytes * t / nt, hi = bytes * (t + 1) / nt;
          std::memcpy(b.data() + lo, a.data() + lo, hi - lo);
        }
      },
      2, reps);
}

void report(const char* op, const char* shape, int threads, double ms, double ref_ms) {
  std::printf(
      "{\"bench\":\"op\",\"op\":\"%s\",\"impl\":\"strata_raw_kernel\",\"pass\":\"fwd+bwd\","
      "\"threads\":%d,\"ms\":%.3f,\"shape\":%s,\"ref\":\"memcpy of bytes moved\","
      "\"ref_ms\":%.3f,\"ratio_to_ref\":%.2f}\n",
      op, threads, ms, shape, ref_ms, ms / ref_ms);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  int reps = 10;
  std::string only;
  strata::bench::BenchFlags flags(
      "strata_bench_row_kernels",
      "Row kernels (softmax, norms, activations, loss) at 1 and 2 threads.");
  flags.add("reps", &reps, "timed repetitions", 1, 1000000);
  flags.add("only", &only, "run the kernels whose names contain any of this text (all)");
  flags.parse(argc, argv);
  const auto want = [&](const char* op) {
    return only.empty() || only.find(op) != std::string::npos;
  };
  const int warmup = 2;
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    if (want("softmax")) {
      const int64_t rows = 4 * 12 * 512, n = 512;
      const auto x = randn(rows * n, 1), dy = randn(rows * n, 2);
      std::vector<float> y(x.size()), dx(x.size());
      const double ms = median_ms(
          [&] {
            softmax_forward(x.data(), y.data(), rows, n, false);
            softmax_backward(y.data(), dy.data(), dx.data(), rows, n, false);
          },
          warmup, reps);
      // fwd reads x, writes y; bwd reads y, dy, writes dx: 5 tensors.
      report("softmax", "[4,12,512,512]", threads, ms, memcpy_ms(x.size() * 4 * 5 / 2, reps));
    }
    if (want("layer_norm")) {
      const int64_t rows = 4096, n = 768;
      const auto x = randn(rows * n, 3), dy = randn(rows * n, 4), w = randn(n, 5), b = randn(n, 6);
      std::vector<float> y(x.size()), dx(x.size()), dw(n), db(n), mean(rows), rstd(rows);
      const double ms = median_ms(
          [&] {
            layer_norm_forward(x.data(), w.data(), b.data(), y.data(), mean.data(), rstd.data(),
                               rows, n, 1e-5);
            layer_norm_backward(x.data(), w.data(), mean.data(), rstd.data(), dy.data(), dx.data(),
                                dw.data(), db.data(), rows, n);
          },
          warmup, reps);
      report("layer_norm", "[4096,768]", threads, ms, memcpy_ms(x.size() * 4 * 5 / 2, reps));
    }
    if (want("rms_norm")) {
      const int64_t rows = 4096, n = 768;
      const auto x = randn(rows * n, 7), dy = randn(rows * n, 8), w = randn(n, 9);
      std::vector<float> y(x.size()), dx(x.size()), dw(n), rstd(rows);
      const double ms = median_ms(
          [&] {
            rms_norm_forward(x.data(), w.data(), y.data(), rstd.data(), rows, n, 1e-6);
            rms_norm_backward(x.data(), w.data(), rstd.data(), dy.data(), dx.data(), dw.data(),
                              rows, n);
          },
          warmup, reps);
      report("rms_norm", "[4096,768]", threads, ms, memcpy_ms(x.size() * 4 * 5 / 2, reps));
    }
    if (want("gelu_tanh")) {
      const int64_t n = int64_t(4096) * 3072;
      const auto x = randn(n, 10), dy = randn(n, 11);
      std::vector<float> y(n), dx(n);
      const double ms = median_ms(
          [&] {
            gelu_forward(x.data(), y.data(), n, true);
            gelu_backward(x.data(), dy.data(), dx.data(), n, true);
          },
          warmup, reps);
      report("gelu_tanh", "[4096,3072]", threads, ms, memcpy_ms(size_t(n) * 4 * 5 / 2, reps));
    }
    if (want("cross_entropy")) {
      const int64_t rows = 2048, V = 32128;
      const auto x = randn(rows * V, 12, 3.0f);
      std::vector<int64_t> t(rows);
      std::mt19937_64 gen(13);
      for (int64_t r = 0; r < rows; ++r) t[r] = r % 10 == 0 ? -100 : int64_t(gen() % V);
      std::vector<float> loss(rows), lse(rows), dl(rows, 1.0f / rows), dx(x.size());
      const double ms = median_ms(
          [&] {
            cross_entropy_forward(x.data(), t.data(), rows, V, -100, 0.0, loss.data(), lse.data());
            cross_entropy_backward(x.data(), t.data(), lse.data(), dl.data(), rows, V, -100, 0.0,
                                   dx.data());
          },
          warmup, reps);
      // fwd reads logits; bwd reads logits and writes dlogits: 3 tensors.
      report("cross_entropy", "[2048,32128]", threads, ms, memcpy_ms(x.size() * 4 * 3 / 2, reps));
    }
  }
  return 0;
}
