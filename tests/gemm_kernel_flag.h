#pragma once
// `--gemm=NAME` for the test binaries whose numbers depend on the GEMM kernel: CMake registers
// their kernel-dependent tests once per kernel (tests/CMakeLists.txt, strata_every_kernel), each
// run with the flag, so an AVX2 host also runs oneDNN's path and an AVX-512 host our own.
#include <cstdio>
#include <string>

#include "core/cpu_features.h"
#include "core/kernels/cpu/gemm/gemm.h"
#include "core/runtime.h"

namespace strata::testing {

// Takes --gemm=NAME out of argv and makes NAME the Runtime's kernel. Returns why this CPU cannot
// run that kernel ("" when it can, or when there is no flag); the binary then runs nothing and
// reports itself as not run. An unknown name ends the program with the list of names.
inline std::string apply_gemm_flag(int& argc, char** argv) {
  std::string why;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--gemm=", 0) != 0) {
      argv[out++] = argv[i];
      continue;
    }
    try {
      const gemm::Kernel k = gemm::parse_kernel(a.substr(7));
      if (gemm::kernel_available(k)) {
        Runtime::get().set_gemm_kernel(k);
      } else {
        why = "gemm kernel " + a.substr(7) + " cannot run on this CPU (" + cpu_features_string() +
              ")";
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s\n", e.what());
      std::exit(2);
    }
  }
  argc = out;
  argv[argc] = nullptr;
  return why;
}

}  // namespace strata::testing
