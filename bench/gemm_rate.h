#pragma once
// The rate of a model's largest GEMM on this CPU, measured inside a training benchmark's own run.
// A step's FLOPs divided by it bound the step from below for any implementation that multiplies at
// that rate, which states a speed target in machine terms beside the FMA peak (docs/models.md).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "core/dtype.h"
#include "core/kernels/cpu/gemm/gemm.h"
#include "core/runtime.h"

namespace strata::bench {

// [tokens, d_model] x [d_model, d_ff] with the runtime's GEMM kernel and thread count: the
// feed-forward input projection over one step's tokens, with f32 inputs, or bf16 inputs (f32
// accumulation) when the run computes in bf16. GFLOP/s, median of 5 after a warm-up.
inline double measure_gemm_gflops(int64_t tokens, int64_t d_model, int64_t d_ff,
                                  DType compute = DType::f32) {
  std::vector<float> a(size_t(tokens * d_model), 0.5f), b(size_t(d_model * d_ff), 0.25f),
      c(size_t(tokens * d_ff));
  // bf16 copies only for a bf16 run (the explicit bf16(float) rounds each element).
  const auto rounded = [&](const std::vector<float>& v) {
    return compute == DType::bf16 ? std::vector<bf16>(v.begin(), v.end()) : std::vector<bf16>();
  };
  const std::vector<bf16> ah = rounded(a), bh = rounded(b);
  const gemm::Kernel kernel = Runtime::get().gemm_kernel();
  std::vector<double> t;
  for (int r = 0; r < 6; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    if (compute == DType::bf16)
      gemm::bf16gemm(kernel, gemm::Trans::No, gemm::Trans::No, tokens, d_ff, d_model, 1.0f,
                     ah.data(), d_model, bh.data(), d_ff, 0.0f, c.data(), d_ff);
    else
      gemm::sgemm(kernel, gemm::Trans::No, gemm::Trans::No, tokens, d_ff, d_model, 1.0f, a.data(),
                  d_model, b.data(), d_ff, 0.0f, c.data(), d_ff);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r > 0) t.push_back(s);
  }
  std::sort(t.begin(), t.end());
  return 2.0 * double(tokens) * double(d_model) * double(d_ff) / t[t.size() / 2] / 1e9;
}

}  // namespace strata::bench
