// main() of the test binaries whose numbers depend on the GEMM kernel: GoogleTest's own, plus
// --gemm=NAME (gemm_kernel_flag.h). A kernel this CPU cannot run exits 77, which ctest reports as
// not run, never as passed.
#include <gtest/gtest.h>

#include <cstdio>

#include "tests/gemm_kernel_flag.h"

int main(int argc, char** argv) {
  const std::string unavailable = strata::testing::apply_gemm_flag(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  if (!unavailable.empty()) {
    std::printf("not run: %s\n", unavailable.c_str());
    return 77;
  }
  return RUN_ALL_TESTS();
}
