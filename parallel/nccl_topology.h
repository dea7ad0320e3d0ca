#pragma once
// The GPU half of Topology::create(layout, CommBackend::Nccl) (CUDA builds only): this rank's
// GPU, the NCCL groups, and their pairing with the MPI groups.
#include <array>
#include <memory>

#include "parallel/communicator.h"
#include "parallel/mpi_communicator.h"

namespace strata::parallel::nccl_setup {

struct GpuGroups {
  std::shared_ptr<Communicator> world, tp, dp, pp;  // DeviceRoutedCommunicator each
  int device = 0;
};

// Collective over the world. Checks that every node has a GPU per rank (throwing the same error
// on every rank otherwise), takes GPU local_rank % GPUs and makes it the current device, creates
// the NCCL world by a unique id broadcast over `world`'s MPI communicator, and the tp, dp and pp
// groups by ncclCommSplit with the (color, key) pairs of the MPI splits, `splits` (tp, dp, pp).
// pp and world get point-to-point lanes (parallel/nccl_communicator.h); tp and dp only run
// collectives.
GpuGroups make_gpu_groups(std::shared_ptr<MpiCommunicator> world,
                          std::shared_ptr<MpiCommunicator> tp, std::shared_ptr<MpiCommunicator> dp,
                          std::shared_ptr<MpiCommunicator> pp,
                          const std::array<std::array<int, 2>, 3>& splits, int local_rank,
                          int local_size);

// The GPU of a one-process job started without MPI: cuda:0 (made current); throws if there is
// none.
int single_process_device();

}  // namespace strata::parallel::nccl_setup
