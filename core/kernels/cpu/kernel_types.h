#pragma once
// Shared vocabulary of the row-wise CPU kernels: the accumulation type of each storage type, the
// conversions between them, runtime CPU dispatch and the OpenMP policy.
#include <omp.h>

#include <cstdint>
#include <cstdlib>
#include <type_traits>

#include "core/bf16.h"

namespace strata::cpu {

// Reductions run in f64 for f64 (gradient checks need it) and in f32 otherwise: bf16 has too few
// mantissa bits to accumulate in, and f32 matches what the bf16 training recipe expects.
template <class T>
using acc_t = std::conditional_t<std::is_same_v<T, double>, double, float>;

template <class T>
inline acc_t<T> to_acc(T v) {
  return static_cast<acc_t<T>>(v);
}

template <class T>
inline T from_acc(acc_t<T> v) {
  return static_cast<T>(v);
}

// Sum of f(j) for j in [0, n) over eight interleaved partial sums combined in a fixed order, as
// the vector paths do: one running f32 sum over a 32k-long row would lose ~1e-5 relative.
template <class A, class F>
inline A lane_sum(int64_t n, F&& f) {
  A p[8] = {};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int k = 0; k < 8; ++k) p[k] += f(j + k);
  for (; j < n; ++j) p[j % 8] += f(j);
  return ((p[0] + p[4]) + (p[1] + p[5])) + ((p[2] + p[6]) + (p[3] + p[7]));
}

// Whether the AVX2+FMA paths may run. Builds without -march=native still get them on capable
// CPUs, and capable builds still run on older CPUs through the scalar paths. Setting
// STRATA_DISABLE_AVX2=1 in the environment forces the scalar paths, so tests can cover them on
// any machine; it is read once.
inline bool cpu_has_avx2_fma() {
  static const bool ok = [] {
    const char* off = std::getenv("STRATA_DISABLE_AVX2");
    if (off && *off && *off != '0') return false;
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return ok;
}

// Worth forking threads only above this many elements of work; below, the fork costs more than
// it saves. Inside an enclosing parallel region we stay single-threaded, as the runtime owns the
// thread count.
inline constexpr int64_t kParallelGrain = 1 << 15;

inline bool use_parallel(int64_t work) {
  return work >= kParallelGrain && !omp_in_parallel() && omp_get_max_threads() > 1;
}

}  // namespace strata::cpu
