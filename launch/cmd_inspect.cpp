// `strata inspect DIR`: what a checkpoint holds, with every checksum verified.
#include <filesystem>
#include <iostream>

#include "core/error.h"
#include "launch/commands.h"
#include "train/checkpoint.h"
#include "train/checkpoint_compare.h"

namespace strata::launch {

Command make_inspect_command() {
  Command c;
  c.name = "inspect";
  c.summary = "list and verify what a checkpoint holds (tensors, shapes, dtypes, trainer state)";
  c.usage =
      "strata inspect DIR   (a checkpoint step_NNNNNNNNN/, or a run directory: its newest good "
      "one)";
  c.declare = [](po::options_description& o, po::positional_options_description& p) {
    o.add_options()("dir", po::value<std::string>()->required(),
                    "checkpoint directory, or a run directory holding step_* checkpoints")(
        "compare", po::value<std::string>()->default_value(""),
        "another checkpoint directory: compare every tensor bit for bit and the counters (exit "
        "0 when identical, 1 otherwise)");
    p.add("dir", 1);
  };
  c.run = [](const Config& cfg) {
    namespace fs = std::filesystem;
    fs::path dir = cfg.get<std::string>("dir");
    STRATA_CHECK(fs::is_directory(dir), "'", dir.string(), "' is not a directory");
    if (!fs::exists(dir / "state.h5") && !fs::exists(dir / "DONE")) {
      // A run directory: show the checkpoint `--resume auto` would pick.
      std::string warnings;
      const auto latest = train::find_latest_checkpoint(dir, &warnings);
      std::cerr << warnings;
      STRATA_CHECK(latest, "no checkpoint in '", dir.string(), "' verifies",
                   warnings.empty() ? " (it holds no step_* directories)" : "");
      std::cout << "run directory " << dir.string() << ": newest good checkpoint is "
                << latest->filename().string() << "\n\n";
      dir = *latest;
    }
    if (const auto other = cfg.get<std::string>("compare"); !other.empty()) {
      const train::CheckpointComparison c = train::compare_checkpoints(dir, other);
      std::cout << c.report;
      return c.identical ? 0 : 1;
    }
    bool ok = false;
    std::cout << train::describe_checkpoint(dir, &ok);
    return ok ? 0 : 1;
  };
  return c;
}

}  // namespace strata::launch
