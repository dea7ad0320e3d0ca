#include "parallel/topology.h"

#include <mpi.h>

#include <array>
#include <iostream>

#include "core/error.h"
#include "parallel/local_communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_env.h"
#ifdef STRATA_HAS_CUDA
#include "parallel/nccl_topology.h"
#endif

namespace strata::parallel {

std::string Layout::str() const {
  return detail::concat("DP", dp == 0 ? std::string("?") : std::to_string(dp), " x TP", tp, " x PP",
                        pp);
}

Layout resolve_layout(Layout layout, int world_size) {
  STRATA_CHECK(layout.tp >= 1 && layout.pp >= 1 && layout.dp >= 0, "parallel layout ", layout.str(),
               " is invalid: tp and pp must be at least 1 and dp at least 0 (0 infers it)");
  const int tp_pp = layout.tp * layout.pp;
  if (layout.dp == 0) {
    STRATA_CHECK(world_size % tp_pp == 0, "parallel layout ", layout.str(),
                 ": cannot infer dp, the world size ", world_size,
                 " is not a multiple of tp * pp = ", tp_pp, "; start ", tp_pp,
                 " x dp ranks or change --parallel.tp / --parallel.pp");
    layout.dp = world_size / tp_pp;
  }
  STRATA_CHECK(layout.dp * tp_pp == world_size, "parallel layout ", layout.str(), " needs ",
               layout.dp * tp_pp, " ranks but the job has ", world_size,
               "; make dp * tp * pp equal the number of ranks (mpirun -np), or leave dp at 0 to "
               "infer it");
  return layout;
}

Coords coords_of(const Layout& l, int world_rank) {
  return {(world_rank / l.tp) % l.dp, world_rank % l.tp, world_rank / (l.tp * l.dp)};
}

int Topology::rank_of(Coords c) const {
  return c.tp + layout_.tp * (c.dp + layout_.dp * c.pp);
}

int Topology::world_rank() const {
  return world_->rank();
}
int Topology::world_size() const {
  return world_->size();
}
int Topology::local_rank() const {
  return local_rank_;
}

Topology Topology::single() {
  Topology t;
  t.layout_ = Layout{1, 1, 1};
  t.world_ = std::make_shared<LocalCommunicator>("world");
  t.tp_ = std::make_shared<LocalCommunicator>("tp");
  t.dp_ = std::make_shared<LocalCommunicator>("dp");
  t.pp_ = std::make_shared<LocalCommunicator>("pp");
  return t;
}

namespace {

using GroupSplits = std::array<std::array<int, 2>, 3>;  // (color, key) of tp, dp, pp

void check_backend_built(CommBackend backend) {
#ifndef STRATA_HAS_CUDA
  STRATA_CHECK(backend != CommBackend::Nccl,
               "the NCCL backend needs a CUDA build: configure with -DSTRATA_CUDA=ON, or train on "
               "the CPU with the MPI backend");
#else
  (void)backend;
#endif
}

}  // namespace

Topology Topology::create(Layout layout, CommBackend backend) {
  check_backend_built(backend);
  if (!MpiEnv::active()) {
    const Layout one = resolve_layout(layout, 1);  // throws unless the layout fits one process
    (void)one;
    Topology t = single();
#ifdef STRATA_HAS_CUDA
    if (backend == CommBackend::Nccl) {
      t.backend_ = backend;
      t.device_ = Device::cuda(nccl_setup::single_process_device());
    }
#endif
    return t;
  }
  int world_size = 1, rank = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &world_size);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  Topology t;
  t.layout_ = resolve_layout(layout, world_size);
  const Layout& l = t.layout_;
  t.coords_ = coords_of(l, rank);
  const Coords c = t.coords_;

  // One watchdog serves the four groups; every rank creates them in the same order.
  auto wd = std::make_shared<Watchdog>(MPI_COMM_WORLD);
  auto split = [&](int color, int key) {
    MPI_Comm comm;
    MPI_Comm_split(MPI_COMM_WORLD, color, key, &comm);
    return comm;
  };
  // (color, key) of the tp, dp and pp splits; the NCCL groups split alike.
  const GroupSplits splits = {{{c.dp + l.dp * c.pp, c.tp},
                               {c.tp + l.tp * c.pp, c.dp},
                               {c.tp + l.tp * c.dp, c.pp}}};
  MPI_Comm world;
  MPI_Comm_dup(MPI_COMM_WORLD, &world);
  auto host_world = std::make_shared<MpiCommunicator>(world, "world", wd);
  auto host_tp = std::make_shared<MpiCommunicator>(split(splits[0][0], splits[0][1]), "tp", wd);
  auto host_dp = std::make_shared<MpiCommunicator>(split(splits[1][0], splits[1][1]), "dp", wd);
  auto host_pp = std::make_shared<MpiCommunicator>(split(splits[2][0], splits[2][1]), "pp", wd);
  t.world_ = host_world;
  t.tp_ = host_tp;
  t.dp_ = host_dp;
  t.pp_ = host_pp;

  MPI_Comm node;
  int local_size = 1;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &t.local_rank_);
  MPI_Comm_size(node, &local_size);
  MPI_Comm_free(&node);

#ifdef STRATA_HAS_CUDA
  if (backend == CommBackend::Nccl) {
    nccl_setup::GpuGroups g = nccl_setup::make_gpu_groups(host_world, host_tp, host_dp, host_pp,
                                                          splits, t.local_rank_, local_size);
    t.backend_ = backend;
    t.device_ = Device::cuda(g.device);
    t.world_ = std::move(g.world);
    t.tp_ = std::move(g.tp);
    t.dp_ = std::move(g.dp);
    t.pp_ = std::move(g.pp);
  }
#else
  (void)local_size;
#endif
  return t;
}

void Topology::set_timeout(std::chrono::milliseconds timeout) {
  for (auto* c : {world_.get(), tp_.get(), dp_.get(), pp_.get()}) c->set_timeout(timeout);
}

int report_error_once(const std::exception& e, std::ostream& os) {
  int rank = 0;
  if (MpiEnv::active()) MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  if (rank == 0) os << e.what() << std::endl;
  return 2;
}

}  // namespace strata::parallel
