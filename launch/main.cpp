#include <iostream>
#include <optional>
#include <vector>

#include "core/runtime.h"
#include "launch/commands.h"
#include "launch/config.h"
#include "parallel/mpi_env.h"

int main(int argc, char** argv) {
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
  using namespace strata::launch;
  const std::vector<Command> commands{
      make_train_command(),     make_finetune_command(),  make_generate_command(),
      make_prepare_command(),   make_tokenizer_command(), make_inspect_command(),
      make_calibrate_command(),
  };
  return run_main(commands, argc, argv);
}
