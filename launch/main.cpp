#include <vector>

#include "core/runtime.h"
#include "launch/commands.h"
#include "launch/config.h"

int main(int argc, char** argv) {
  strata::prefer_passive_omp_wait(argv);
  using namespace strata::launch;
  const std::vector<Command> commands{
      make_train_command(),     make_generate_command(), make_prepare_command(),
      make_tokenizer_command(), make_inspect_command(),
  };
  return run_main(commands, argc, argv);
}
