#pragma once
// The machine's measured arithmetic peak: the reference for GEMM figures and for MFU.
//
// Measured with the widest vectors the CPU executes, so that MFU means the same on every host:
// on a core with two full 512-bit FMA pipes the zmm rate is twice the ymm rate, and a ymm-only
// peak would double every MFU printed there; on cores that split 512-bit FMAs in two
// ("double-pumped") both rates are equal. Both are measured and reported.

namespace strata {

struct FmaPeak {
  double ymm_gflops = 0;  // 256-bit FMAs (0 without AVX2+FMA)
  double zmm_gflops = 0;  // 512-bit FMAs (0 without AVX-512F)
  // The larger of the two: the peak MFU and "vs peak" refer to.
  double gflops() const { return zmm_gflops > ymm_gflops ? zmm_gflops : ymm_gflops; }
  // "zmm" or "ymm": the vectors that gave gflops(); "none" without AVX2.
  const char* widest() const;
};

// GFLOP/s (2 flops per lane per FMA) of loops of independent FMAs, run in every OpenMP thread at
// once (omp_get_max_threads()) and summed, so the figure for N threads is measured rather than N
// times the one-core figure; best of three runs. f64: half the lanes of f32.
FmaPeak measure_fma_peak(bool f64);

// FmaPeak::gflops() of measure_fma_peak.
double measure_fma_peak_gflops(bool f64);

// GFLOP/s of AVX512-BF16 dot products (vdpbf16ps on zmm: 16 f32 lanes, each adding two bf16
// products, 4 flops per lane), measured the same way; 0 where the CPU lacks AVX512-BF16. The
// ceiling of a bf16 GEMM on such a CPU.
double measure_bf16_dot_peak_gflops();

}  // namespace strata
