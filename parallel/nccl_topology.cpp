#include "parallel/nccl_topology.h"

#include <cuda_runtime.h>

#include <vector>

#include "core/cuda/cuda_check.h"
#include "core/cuda/cuda_context.h"
#include "core/error.h"
#include "parallel/nccl_communicator.h"
#include "parallel/nccl_routed_communicator.h"

namespace strata::parallel::nccl_setup {

namespace {

// Every rank learns every rank's (ranks on its node, GPUs visible to it), so that a node short of
// GPUs makes all ranks throw the same error instead of leaving the others in the bootstrap.
void check_gpus_per_node(MPI_Comm world, int local_size, int gpus) {
  int size = 1;
  MPI_Comm_size(world, &size);
  const int mine[2] = {local_size, gpus};
  std::vector<int> all(2 * size_t(size));
  MPI_Allgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, world);
  for (int r = 0; r < size; ++r) {
    const int ranks = all[2 * size_t(r)], devices = all[2 * size_t(r) + 1];
    STRATA_CHECK(devices > 0, "NCCL backend: world rank ", r,
                 " sees no CUDA device; run on GPU nodes (check CUDA_VISIBLE_DEVICES and the "
                 "driver), or train on the CPU with the MPI backend");
    STRATA_CHECK(ranks <= devices, "NCCL backend: the node of world rank ", r, " runs ", ranks,
                 " ranks but has ", devices,
                 " GPUs, and NCCL needs one GPU per rank; start at "
                 "most ",
                 devices, " ranks per node (mpirun -np / --map-by ppr:", devices,
                 ":node) or make more GPUs visible (CUDA_VISIBLE_DEVICES)");
  }
}

}  // namespace

GpuGroups make_gpu_groups(std::shared_ptr<MpiCommunicator> world,
                          std::shared_ptr<MpiCommunicator> tp, std::shared_ptr<MpiCommunicator> dp,
                          std::shared_ptr<MpiCommunicator> pp,
                          const std::array<std::array<int, 2>, 3>& splits, int local_rank,
                          int local_size) {
  const int gpus = cuda::device_count();
  check_gpus_per_node(world->comm(), local_size, gpus);
  GpuGroups g;
  g.device = local_rank % gpus;
  STRATA_CUDA_CHECK(cudaSetDevice(g.device));

  auto watchdog = std::make_shared<NcclWatchdog>();
  NcclOptions lanes, collectives_only;
  collectives_only.p2p_lanes = false;
  std::shared_ptr<NcclCommunicator> nccl_world =
      NcclCommunicator::init(world->comm(), g.device, "world", watchdog, lanes);
  std::shared_ptr<NcclCommunicator> nccl_tp =
      nccl_world->split(splits[0][0], splits[0][1], "tp", collectives_only);
  std::shared_ptr<NcclCommunicator> nccl_dp =
      nccl_world->split(splits[1][0], splits[1][1], "dp", collectives_only);
  std::shared_ptr<NcclCommunicator> nccl_pp =
      nccl_world->split(splits[2][0], splits[2][1], "pp", lanes);

  g.world = std::make_shared<DeviceRoutedCommunicator>(std::move(world), std::move(nccl_world));
  g.tp = std::make_shared<DeviceRoutedCommunicator>(std::move(tp), std::move(nccl_tp));
  g.dp = std::make_shared<DeviceRoutedCommunicator>(std::move(dp), std::move(nccl_dp));
  g.pp = std::make_shared<DeviceRoutedCommunicator>(std::move(pp), std::move(nccl_pp));
  return g;
}

int single_process_device() {
  STRATA_CHECK(cuda::device_count() > 0,
               "NCCL backend: this process sees no CUDA device; run on a GPU machine (check "
               "CUDA_VISIBLE_DEVICES and the driver), or train on the CPU with the MPI backend");
  STRATA_CUDA_CHECK(cudaSetDevice(0));
  return 0;
}

}  // namespace strata::parallel::nccl_setup
