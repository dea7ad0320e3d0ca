#include <cstdlib>
#include <iostream>
#include <optional>
#include <vector>

#include "core/runtime.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "parallel/mpi_env.h"
#include "train/stop_signals.h"

int main(int argc, char** argv) {
  // First, before MPI or OpenMP start threads: SIGTERM, SIGUSR1 and SIGINT go to one waiting
  // thread (train/stop_signals.h).
  const strata::train::StopSignals signals;
  strata::prefer_passive_omp_wait(argv);
  // MPI only when a launcher started us: a plain `strata train` never touches it.
  std::optional<strata::parallel::MpiEnv> mpi;
  if (strata::parallel::MpiEnv::launched_by_mpi()) {
    try {
      mpi.emplace(argc, argv);
    } catch (const std::exception& e) {
      std::cerr << "strata: " << e.what() << "\n";
      return 2;
    }
  }
  // srun without an MPI plugin starts copies that cannot reach each other: each would train
  // alone and write the same run directory. Slurm says how many it started.
  if (!mpi) {
    const char* tasks = std::getenv("SLURM_NTASKS");
    const char* step = std::getenv("SLURM_STEP_ID");
    if (tasks && step && std::atoi(tasks) > 1) {
      std::cerr << "strata: srun started " << tasks
                << " tasks without an MPI launcher, so they cannot form one job; use "
                   "`srun --mpi=pmix` (launch/slurm/strata-srun.sbatch) or mpirun inside the "
                   "allocation (launch/slurm/strata-mpirun.sbatch)\n";
      return 2;
    }
  }
  using namespace strata::launch;
  const std::vector<Command> commands{
      make_train_command(),     make_finetune_command(),  make_generate_command(),
      make_prepare_command(),   make_tokenizer_command(), make_inspect_command(),
      make_calibrate_command(),
  };
  return run_main(commands, argc, argv);
}
