// main() of the NCCL test binary (CUDA builds): as mpi_test_main.cpp, but the job first checks
// that every rank can have a GPU of its own. If any node has no GPU or fewer GPUs than ranks,
// every rank prints "rank R/N skipped: <why>" and exits 77, which run_mpi_test.sh passes on to
// ctest as a skipped test (SKIP_RETURN_CODE 77): a test that could not run must not pass.
#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>
#include <memory>
#include <string>

#include "core/cuda/cuda_context.h"
#include "parallel/mpi_env.h"

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

// Why this rank cannot have a GPU of its own ("" when it can).
std::string gpu_shortfall() {
  const int gpus = strata::cuda::device_count();
  MPI_Comm node;
  int rank = 0, local = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  MPI_Comm_size(node, &local);
  MPI_Comm_free(&node);
  if (gpus == 0) return "no CUDA device on this node";
  if (local > gpus)
    return "this node runs " + std::to_string(local) + " ranks but has " + std::to_string(gpus) +
           " GPUs (NCCL needs one per rank)";
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  strata::parallel::MpiEnv env(argc, argv);
  ::testing::InitGoogleTest(&argc, argv);
  const int rank = env.world_rank(), size = env.world_size();
  const std::string why = gpu_shortfall();
  int ok = why.empty() ? 1 : 0, all_ok = 0;
  MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
  if (!all_ok) {
    std::printf("rank %d/%d skipped: %s\n", rank, size,
                why.empty() ? "another node has too few GPUs" : why.c_str());
    std::fflush(stdout);
    return 77;
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
