// main() of the MPI test binaries: MPI around GoogleTest, rank 0 prints the usual report, the other
// ranks print only their failures (prefixed with their rank), and each rank whose tests all passed
// prints "rank R/N ok", which run_mpi_test.sh counts: mpirun can exit 0 without having run
// anything (as root without --allow-run-as-root), so its exit status alone proves nothing.
// --gemm=NAME runs every test under that GEMM kernel (gemm_kernel_flag.h).
#include <gtest/gtest.h>

#include <cstdio>
#include <memory>

#include "parallel/mpi_env.h"
#include "tests/gemm_kernel_flag.h"

namespace {

class RankFailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit RankFailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::printf("[rank %d] %s:%d: Failure\n%s\n", rank_, r.file_name() ? r.file_name() : "?",
                r.line_number(), r.message());
    std::fflush(stdout);
  }

 private:
  int rank_;
};

}  // namespace

int main(int argc, char** argv) {
  strata::parallel::MpiEnv env(argc, argv);
  const std::string unavailable = strata::testing::apply_gemm_flag(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rank = env.world_rank(), size = env.world_size();
  if (!unavailable.empty()) {  // run_mpi_test.sh reports the test as not run
    std::printf("rank %d/%d skipped: %s\n", rank, size, unavailable.c_str());
    return 0;
  }
  if (rank != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    std::unique_ptr<::testing::TestEventListener>(
        listeners.Release(listeners.default_result_printer()));
    listeners.Append(std::make_unique<RankFailurePrinter>(rank).release());  // gtest takes it
  }
  const int rc = RUN_ALL_TESTS();
  if (rc == 0) {
    std::printf("rank %d/%d ok\n", rank, size);
    std::fflush(stdout);
  }
  return rc;
}
