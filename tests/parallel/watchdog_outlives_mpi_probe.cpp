// A communicator that outlives MpiEnv, as a function-local static in a test binary does: MPI is
// finalised while its watchdog thread still runs. The thread used to keep calling MPI_Test after
// MPI_Finalize and crashed the process at exit (seen in CI as a rare segfault after every test
// had passed). Each rank prints "rank R/N ok" only after finalising, outliving MPI for a while
// and destroying the communicator; run_mpi_test.sh fails unless all ranks print it and mpirun
// exits 0.
#include <chrono>
#include <cstdio>
#include <memory>
#include <thread>

#include "parallel/mpi_communicator.h"
#include "parallel/mpi_env.h"

int main(int argc, char** argv) {
  using namespace strata::parallel;
  std::unique_ptr<MpiCommunicator> world;
  int rank = 0, size = 0;
  {
    MpiEnv env(argc, argv);
    world = MpiCommunicator::world("world");
    rank = world->rank();
    size = world->size();
    world->barrier("before finalize");
  }  // MPI_Finalize, with the watchdog thread running
  // The watchdog polls every 20 ms: before the fix, this span saw a dozen MPI_Test calls on a
  // finalised MPI.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  world.reset();
  std::printf("rank %d/%d ok\n", rank, size);
  return 0;
}
