// Main of the `cuda` suite. Without a GPU the tests cannot run, and a run that silently passes
// would claim they did: exit 77, which ctest (SKIP_RETURN_CODE 77) reports as not run. Listing the
// tests (gtest_discover_tests at build time) works everywhere.
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>

#include "core/cuda/cuda_context.h"

int main(int argc, char** argv) {
  bool listing = false;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--gtest_list_tests") == 0) listing = true;
  ::testing::InitGoogleTest(&argc, argv);
  if (!listing && strata::cuda::device_count() == 0) {
    std::printf("no CUDA device: the cuda tests did not run\n");
    return 77;
  }
  return RUN_ALL_TESTS();
}
