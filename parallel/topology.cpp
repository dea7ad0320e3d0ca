#include "parallel/topology.h"

#include <mpi.h>

#include <iostream>

#include "core/error.h"
#include "parallel/local_communicator.h"
#include "parallel/mpi_communicator.h"
#include "parallel/mpi_env.h"

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

Topology Topology::create(Layout layout) {
  if (!MpiEnv::active()) {
    const Layout one = resolve_layout(layout, 1);  // throws unless the layout fits one process
    (void)one;
    return single();
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
  MPI_Comm world;
  MPI_Comm_dup(MPI_COMM_WORLD, &world);
  t.world_ = std::make_shared<MpiCommunicator>(world, "world", wd);
  t.tp_ = std::make_shared<MpiCommunicator>(split(c.dp + l.dp * c.pp, c.tp), "tp", wd);
  t.dp_ = std::make_shared<MpiCommunicator>(split(c.tp + l.tp * c.pp, c.dp), "dp", wd);
  t.pp_ = std::make_shared<MpiCommunicator>(split(c.tp + l.tp * c.dp, c.pp), "pp", wd);

  MPI_Comm node;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
  MPI_Comm_rank(node, &t.local_rank_);
  MPI_Comm_free(&node);
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
