#include "core/fma_peak.h"

#include <immintrin.h>
#include <omp.h>

#include <chrono>

#include "core/cpu_features.h"

namespace strata {
namespace {

// 12 independent chains cover the FMA latency (4-5 cycles) times the 2 FMA pipes with room to
// spare. The empty asm with "+x" keeps each accumulator in a register and stops the compiler
// from folding or vectorising the loop away.
template <class V, V (*Fma)(V, V, V)>
__attribute__((target("avx2,fma"))) V fma_chains(V x, V y, long iters) {
  V a0 = x, a1 = x, a2 = x, a3 = x, a4 = x, a5 = x, a6 = x, a7 = x, a8 = x, a9 = x, a10 = x,
    a11 = x;
  for (long i = 0; i < iters; ++i) {
    a0 = Fma(a0, y, x);
    a1 = Fma(a1, y, x);
    a2 = Fma(a2, y, x);
    a3 = Fma(a3, y, x);
    a4 = Fma(a4, y, x);
    a5 = Fma(a5, y, x);
    a6 = Fma(a6, y, x);
    a7 = Fma(a7, y, x);
    a8 = Fma(a8, y, x);
    a9 = Fma(a9, y, x);
    a10 = Fma(a10, y, x);
    a11 = Fma(a11, y, x);
    asm volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
    asm volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
  }
  return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11;
}

__attribute__((target("avx2,fma"))) __m256 fma_ps(__m256 a, __m256 b, __m256 c) {
  return _mm256_fmadd_ps(a, b, c);
}
__attribute__((target("avx2,fma"))) __m256d fma_pd(__m256d a, __m256d b, __m256d c) {
  return _mm256_fmadd_pd(a, b, c);
}

// Returns the sum's first lane so the work is observable.
__attribute__((target("avx2,fma"))) double run_chains(bool f64, long iters) {
  if (f64) {
    const __m256d r =
        fma_chains<__m256d, fma_pd>(_mm256_set1_pd(1e-9), _mm256_set1_pd(0.999), iters);
    return _mm256_cvtsd_f64(r);
  }
  const __m256 r = fma_chains<__m256, fma_ps>(_mm256_set1_ps(1e-9f), _mm256_set1_ps(0.999f), iters);
  return _mm256_cvtss_f32(r);
}

}  // namespace

double measure_fma_peak_gflops(bool f64) {
  const CpuFeatures& f = cpu_features();
  if (!f.avx2 || !f.fma) return 0.0;
  // 2e7 iterations x 12 FMAs is about 0.1 s per core at 2 FMAs/cycle and 3 GHz: long enough to
  // ramp the clock, short enough to repeat.
  constexpr long kIters = 20'000'000;
  const double lanes = f64 ? 4.0 : 8.0;
  const int threads = omp_get_max_threads();
  double best = 0.0;
  volatile double sink = 0.0;
  for (int rep = 0; rep < 3; ++rep) {  // best of 3: a peak is the least-disturbed run
    double seconds = 0.0;
#pragma omp parallel num_threads(threads) reduction(max : seconds)
    {
#pragma omp barrier
      const auto t0 = std::chrono::steady_clock::now();
      const double r = run_chains(f64, kIters);
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#pragma omp critical
      sink = sink + r;
    }
    // Every thread did the same work; the slowest one bounds the aggregate rate.
    const double gflops = threads * double(kIters) * 12.0 * lanes * 2.0 / seconds / 1e9;
    if (gflops > best) best = gflops;
  }
  return best;
}

}  // namespace strata
