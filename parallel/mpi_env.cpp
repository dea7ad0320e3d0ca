#include "parallel/mpi_env.h"

#include <mpi.h>

#include <cstdlib>
#include <mutex>

#include "core/error.h"

namespace strata::parallel {

namespace {
// MPI's lifetime is process-wide, so the lock that orders finalisation after the background
// threads' MPI calls is too.
std::shared_mutex& finalize_mutex() {
  static std::shared_mutex m;
  return m;
}
}  // namespace

MpiEnv::Use::Use() : lock_(finalize_mutex()), ok_(active()) {}

MpiEnv::MpiEnv(int& argc, char**& argv) {
  if (active()) {
    int provided = 0;
    MPI_Query_thread(&provided);
    STRATA_CHECK(provided == MPI_THREAD_MULTIPLE,
                 "MpiEnv: MPI was initialised elsewhere without MPI_THREAD_MULTIPLE, which the "
                 "communicator watchdog needs; let MpiEnv initialise MPI");
    return;
  }
  int provided = 0;
  MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
  owns_ = true;
  if (provided != MPI_THREAD_MULTIPLE) {
    MPI_Finalize();
    owns_ = false;
    STRATA_FAIL("MpiEnv: this MPI library provides thread level ", provided,
                " but the communicator watchdog needs MPI_THREAD_MULTIPLE (Open MPI: built with "
                "--enable-mpi-thread-multiple, as Debian's is)");
  }
}

MpiEnv::~MpiEnv() {
  std::unique_lock lock(finalize_mutex());
  if (owns_ && active()) MPI_Finalize();
}

int MpiEnv::world_rank() const {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int MpiEnv::world_size() const {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

bool MpiEnv::active() {
  int init = 0, fin = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&fin);
  return init && !fin;
}

bool MpiEnv::launched_by_mpi() {
  // Open MPI's mpirun, PMIx launchers (srun --mpi=pmix, prterun) and MPICH/Hydra's PMI.
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"})
    if (std::getenv(var) != nullptr) return true;
  return false;
}

}  // namespace strata::parallel
