#pragma once
// The DP x TP x PP layout of the world and its process groups. World rank r maps to
//   tp = r % TP,  dp = (r / TP) % DP,  pp = r / (TP * DP)
// (TP fastest-varying so a TP group shares a node, then DP, then PP). Groups are made with
// MPI_Comm_split; the node-local rank (MPI_Comm_split_type shared) picks a GPU.
//
// The transport follows where the tensors live: CommBackend::Mpi (the default) for CPU training,
// CommBackend::Nccl for CUDA training (CUDA builds): each rank takes GPU local_rank % GPUs of its
// node, and every group carries CUDA tensors over NCCL and CPU tensors over MPI
// (parallel/nccl_routed_communicator.h).
#include <chrono>
#include <exception>
#include <iosfwd>
#include <memory>
#include <string>

#include "core/device.h"
#include "parallel/communicator.h"

namespace strata::parallel {

enum class CommBackend {
  Mpi,   // CPU tensors
  Nccl,  // CUDA tensors over NCCL, CPU ones over MPI; needs -DSTRATA_CUDA=ON, one GPU per rank
};

struct Layout {
  int dp = 0;  // 0: inferred as world / (tp * pp)
  int tp = 1;
  int pp = 1;
  std::string str() const;  // "DP2 x TP2 x PP1"
};

struct Coords {
  int dp = 0, tp = 0, pp = 0;
};

class Topology {
 public:
  // Collective over the world. Checks that the product matches the world size (inferring dp when
  // 0) and throws strata::Error naming the layout it understood otherwise; every rank throws the
  // same error (see report_error_once). Without MPI initialised, a layout of one process gives
  // single() (on cuda:0 with Nccl).
  // With CommBackend::Nccl it also picks this rank's GPU and makes it the current device, creates
  // the NCCL world (unique id broadcast over MPI) and splits it into the groups; it throws, on
  // every rank alike, when a node has more ranks than GPUs or none, or in a CPU-only build.
  static Topology create(Layout layout, CommBackend backend = CommBackend::Mpi);
  // A one-process topology (no MPI needed): every group has size 1.
  static Topology single();

  const Layout& layout() const { return layout_; }
  int world_rank() const;
  int world_size() const;
  int local_rank() const;  // among the ranks on this node
  CommBackend backend() const { return backend_; }
  // Where this rank's tensors live: its GPU with Nccl, the CPU with Mpi.
  Device device() const { return device_; }
  Coords coords() const { return coords_; }
  int rank_of(Coords c) const;  // world rank

  Communicator& world() const { return *world_; }
  Communicator& tp() const { return *tp_; }  // ranks with the same (dp, pp)
  Communicator& dp() const { return *dp_; }  // ranks with the same (tp, pp)
  Communicator& pp() const { return *pp_; }  // ranks with the same (dp, tp), ordered by stage

  // The same timeout for the four groups (`--parallel.timeout`).
  void set_timeout(std::chrono::milliseconds timeout);

  bool is_first_stage() const { return coords_.pp == 0; }
  bool is_last_stage() const { return coords_.pp == layout_.pp - 1; }

 private:
  Layout layout_;
  Coords coords_;
  int local_rank_ = 0;
  CommBackend backend_ = CommBackend::Mpi;
  Device device_;
  std::shared_ptr<Communicator> world_, tp_, dp_, pp_;
};

// The layout with dp inferred (when 0) for `world_size` ranks; throws strata::Error naming the
// layout understood and the fix when it does not fit.
Layout resolve_layout(Layout layout, int world_size);
// Coordinates of a world rank under a resolved layout.
Coords coords_of(const Layout& layout, int world_rank);

// For mains: an error that every rank raised alike (a layout error) is printed once, by world
// rank 0, and every rank returns this exit status (2) so the job ends non-zero without N copies
// of the message.
int report_error_once(const std::exception& e, std::ostream& os);

}  // namespace strata::parallel
