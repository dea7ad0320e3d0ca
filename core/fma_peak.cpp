#include "core/fma_peak.h"

#include <immintrin.h>
#include <omp.h>

#include <chrono>
#include <functional>

#include "core/cpu_features.h"

namespace strata {
namespace {

// 12 independent chains cover the FMA latency (4-6 cycles) times 2 pipes with room to spare. The
// empty asm with "+v" keeps each accumulator in a register and stops the compiler from folding or
// vectorising the loop away. A macro, not a template: each expansion must sit inside a function
// compiled for its own ISA (target attribute) so that the intrinsics inline.
#define STRATA_FMA_CHAINS(V, X, Y, ITERS, STEP)                                              \
  V a0 = X, a1 = X, a2 = X, a3 = X, a4 = X, a5 = X, a6 = X, a7 = X, a8 = X, a9 = X, a10 = X, \
    a11 = X;                                                                                 \
  for (long i = 0; i < ITERS; ++i) {                                                         \
    a0 = STEP(a0);                                                                           \
    a1 = STEP(a1);                                                                           \
    a2 = STEP(a2);                                                                           \
    a3 = STEP(a3);                                                                           \
    a4 = STEP(a4);                                                                           \
    a5 = STEP(a5);                                                                           \
    a6 = STEP(a6);                                                                           \
    a7 = STEP(a7);                                                                           \
    a8 = STEP(a8);                                                                           \
    a9 = STEP(a9);                                                                           \
    a10 = STEP(a10);                                                                         \
    a11 = STEP(a11);                                                                         \
    asm volatile("" : "+v"(a0), "+v"(a1), "+v"(a2), "+v"(a3), "+v"(a4), "+v"(a5));           \
    asm volatile("" : "+v"(a6), "+v"(a7), "+v"(a8), "+v"(a9), "+v"(a10), "+v"(a11));         \
  }                                                                                          \
  const V sum = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11

constexpr int kChains = 12;

// Each returns its sum's first lane so that the work is observable.
__attribute__((target("avx2,fma"))) double ymm_chains(bool f64, long iters) {
  if (f64) {
    const __m256d x = _mm256_set1_pd(1e-9), y = _mm256_set1_pd(0.999);
#define STEP(a) _mm256_fmadd_pd(a, y, x)
    STRATA_FMA_CHAINS(__m256d, x, y, iters, STEP);
#undef STEP
    return _mm256_cvtsd_f64(sum);
  }
  const __m256 x = _mm256_set1_ps(1e-9f), y = _mm256_set1_ps(0.999f);
#define STEP(a) _mm256_fmadd_ps(a, y, x)
  STRATA_FMA_CHAINS(__m256, x, y, iters, STEP);
#undef STEP
  return _mm256_cvtss_f32(sum);
}

__attribute__((target("avx512f"))) double zmm_chains(bool f64, long iters) {
  if (f64) {
    const __m512d x = _mm512_set1_pd(1e-9), y = _mm512_set1_pd(0.999);
#define STEP(a) _mm512_fmadd_pd(a, y, x)
    STRATA_FMA_CHAINS(__m512d, x, y, iters, STEP);
#undef STEP
    return _mm512_cvtsd_f64(sum);
  }
  const __m512 x = _mm512_set1_ps(1e-9f), y = _mm512_set1_ps(0.999f);
#define STEP(a) _mm512_fmadd_ps(a, y, x)
  STRATA_FMA_CHAINS(__m512, x, y, iters, STEP);
#undef STEP
  return _mm512_cvtss_f32(sum);
}

// vdpbf16ps: acc (16 x f32) += a[2i] * b[2i] + a[2i+1] * b[2i+1].
__attribute__((target("avx512f,avx512bf16"))) double bf16_dot_chains(long iters) {
  const __m512 x = _mm512_set1_ps(1e-9f);
  // 0x3f80 is bf16 1.0, 0x3c23 about 0.01: small products keep the sums finite.
  const __m512bh y = (__m512bh)_mm512_set1_epi16(0x3f80);
  const __m512bh z = (__m512bh)_mm512_set1_epi16(0x3c23);
#define STEP(a) _mm512_dpbf16_ps(a, y, z)
  STRATA_FMA_CHAINS(__m512, x, y, iters, STEP);
#undef STEP
  return _mm512_cvtss_f32(sum);
}

#undef STRATA_FMA_CHAINS

// GFLOP/s of `chains` run in every OpenMP thread at once: best of 3, a peak being the
// least-disturbed run. `flops_per_iter` counts one iteration of one thread.
double measure(const std::function<double(long)>& chains, double flops_per_iter) {
  // 2e7 iterations x 12 instructions is about 0.1 s per core at 2 per cycle and 3 GHz: long
  // enough to ramp the clock, short enough to repeat.
  constexpr long kIters = 20'000'000;
  const int threads = omp_get_max_threads();
  double best = 0.0;
  volatile double sink = 0.0;
  for (int rep = 0; rep < 3; ++rep) {
    double seconds = 0.0;
#pragma omp parallel num_threads(threads) reduction(max : seconds)
    {
#pragma omp barrier
      const auto t0 = std::chrono::steady_clock::now();
      const double r = chains(kIters);
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
#pragma omp critical
      sink = sink + r;
    }
    // Every thread did the same work; the slowest one bounds the aggregate rate.
    const double gflops = threads * double(kIters) * flops_per_iter / seconds / 1e9;
    if (gflops > best) best = gflops;
  }
  return best;
}

}  // namespace

const char* FmaPeak::widest() const {
  if (zmm_gflops > 0 && zmm_gflops >= ymm_gflops) return "zmm";
  return ymm_gflops > 0 ? "ymm" : "none";
}

FmaPeak measure_fma_peak(bool f64) {
  const CpuFeatures& f = cpu_features();
  const double lanes256 = f64 ? 4.0 : 8.0;
  FmaPeak p;
  if (f.avx2 && f.fma) {
    p.ymm_gflops = measure([f64](long n) { return ymm_chains(f64, n); }, kChains * lanes256 * 2.0);
  }
  if (f.avx512f) {
    p.zmm_gflops =
        measure([f64](long n) { return zmm_chains(f64, n); }, kChains * 2.0 * lanes256 * 2.0);
  }
  return p;
}

double measure_fma_peak_gflops(bool f64) {
  return measure_fma_peak(f64).gflops();
}

double measure_bf16_dot_peak_gflops() {
  const CpuFeatures& f = cpu_features();
  if (!f.avx512f || !f.avx512_bf16) return 0.0;
  // 16 lanes x 2 products x 2 flops per instruction.
  return measure(bf16_dot_chains, kChains * 16.0 * 2.0 * 2.0);
}

}  // namespace strata
