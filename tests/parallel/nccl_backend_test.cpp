// The communication backend choice of Topology without MPI (one process): MPI keeps tensors on
// the CPU; NCCL puts them on cuda:0 where a CUDA build has a GPU, and otherwise fails with an
// error naming the fix (a CPU-only build, or no GPU) rather than falling back silently.
#include <gtest/gtest.h>

#include <functional>

#include "core/error.h"
#include "parallel/topology.h"

namespace strata::parallel {
namespace {

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(CommBackend, MpiIsTheDefaultAndKeepsTensorsOnTheCpu) {
  const Topology t = Topology::create(Layout{});
  EXPECT_EQ(t.backend(), CommBackend::Mpi);
  EXPECT_TRUE(t.device().is_cpu());
  EXPECT_TRUE(Topology::single().device().is_cpu());
}

TEST(CommBackend, NcclTakesTheGpuOrNamesWhyItCannot) {
  Topology t = Topology::single();
  const std::string err = error_of([&] { t = Topology::create(Layout{}, CommBackend::Nccl); });
  if (err.empty()) {  // a CUDA build on a GPU machine
    EXPECT_EQ(t.backend(), CommBackend::Nccl);
    EXPECT_EQ(t.device(), Device::cuda(0));
    return;
  }
  const bool cpu_build = err.find(
                             "the NCCL backend needs a CUDA build: configure with "
                             "-DSTRATA_CUDA=ON") != std::string::npos;
  const bool no_gpu = err.find("sees no CUDA device") != std::string::npos;
  EXPECT_TRUE(cpu_build || no_gpu) << err;
}

TEST(CommBackend, LayoutErrorsComeFirst) {
  // A layout that cannot fit one process is reported as such, whichever the backend.
  const std::string err = error_of([] { Topology::create(Layout{1, 2, 1}, CommBackend::Mpi); });
  EXPECT_NE(err.find("needs 2 ranks but the job has 1"), std::string::npos) << err;
}

}  // namespace
}  // namespace strata::parallel
