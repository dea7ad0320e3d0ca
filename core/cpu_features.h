#pragma once
// What the CPU we run on can execute. Kernels are chosen at run time from this, so one binary
// built without -march=native still uses AVX2/FMA where the machine has them.
#include <string>

namespace strata {

struct CpuFeatures {
  bool avx2 = false;
  bool fma = false;
  bool avx512f = false;
  bool avx512bw = false;
  bool avx512vl = false;
  bool avx512_bf16 = false;
};

// Detected once on first use; immutable afterwards, so safe to read from any thread.
const CpuFeatures& cpu_features();

// e.g. "avx2 fma" or "avx2 fma avx512f avx512bw avx512vl avx512_bf16"; "none" when none apply.
std::string cpu_features_string();

}  // namespace strata
