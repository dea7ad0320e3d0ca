#pragma once
// The machine's measured FMA throughput: the reference for GEMM figures and for MFU.

namespace strata {

// GFLOP/s (2 flops per lane per FMA) of a loop of independent AVX2 FMAs, run in every OpenMP
// thread at once (omp_get_max_threads()) and summed, so the figure for N threads is measured
// rather than N times the one-core figure. f64: 4 lanes per FMA instead of 8.
// Returns 0 when the CPU has no AVX2+FMA.
double measure_fma_peak_gflops(bool f64);

}  // namespace strata
