// A program that hangs an NCCL operation on purpose, for nccl_watchdog_test.sh; the watchdog
// (1 s timeout) must end the job with a message naming the operation. Modes:
//   blocked  (1 rank): the GPU stream is held by a 30 s host callback, so the all-reduce queued
//            behind it cannot finish
//   stall    (2 ranks): rank 1 sleeps instead of joining the all-reduce
//   recv     (2 ranks): rank 0 receives from rank 1, which never sends
// Exits 77 after printing "skipped" when there are fewer GPUs than ranks.
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>

#include "nccl_test_util.h"
#include "parallel/mpi_env.h"
#include "parallel/topology.h"

using namespace strata;
using namespace strata::parallel;

int main(int argc, char** argv) {
  MpiEnv env(argc, argv);
  const std::string mode = argc > 1 ? argv[1] : "";
  const int rank = env.world_rank(), size = env.world_size();
  if (cuda::device_count() < size) {
    std::printf("nccl_watchdog_probe: rank %d/%d skipped: %d GPUs for %d ranks\n", rank, size,
                cuda::device_count(), size);
    return 77;
  }
  {
    Topology topo = Topology::create(Layout{}, CommBackend::Nccl);
    topo.set_timeout(std::chrono::seconds(1));
    const int dev = topo.device().index;
    Tensor t = testing::to_gpu(ones({4}), topo.device());
    topo.world().all_reduce(t, parallel::ReduceOp::Sum, "test.warmup");
    topo.world().all_reduce(t, parallel::ReduceOp::Sum, "test.warmup");
    cuda::synchronize(dev);
    if (mode == "blocked") {
      STRATA_CUDA_CHECK(cudaLaunchHostFunc(
          cuda::stream(dev), [](void*) { std::this_thread::sleep_for(std::chrono::seconds(30)); },
          nullptr));
      topo.world().all_reduce(t, parallel::ReduceOp::Sum, "test.stalled");
      cuda::synchronize(dev);
    } else if (mode == "stall") {
      if (rank == 1) std::this_thread::sleep_for(std::chrono::seconds(20));
      topo.world().all_reduce(t, parallel::ReduceOp::Sum, "test.stalled");
      cuda::synchronize(dev);
    } else if (mode == "recv") {
      if (rank == 0) {
        Tensor in = Tensor::empty({4}, DType::f32, topo.device());
        topo.world().recv(in, 1, "test.activation");
        cuda::synchronize(dev);
      } else {
        std::this_thread::sleep_for(std::chrono::seconds(20));
      }
    } else {
      std::fprintf(stderr, "nccl_watchdog_probe: unknown mode '%s'\n", mode.c_str());
      return 2;
    }
  }
  std::printf("nccl_watchdog_probe: rank %d finished mode %s without a timeout\n", rank,
              mode.c_str());
  return 0;
}
