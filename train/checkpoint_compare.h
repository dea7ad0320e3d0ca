#pragma once
// Two checkpoints compared value for value: every model and optimizer tensor bit for bit, and the
// counters a resume continues from. What "a resumed run equals the straight one" means, for
// `strata inspect --compare` and the tests that preempt a run.
#include <filesystem>
#include <string>

namespace strata::train {

struct CheckpointComparison {
  bool identical = false;
  std::string report;  // one line per difference (at most 20), then a summary line
};

// Loads (and verifies) both directories; throws for one that does not load.
CheckpointComparison compare_checkpoints(const std::filesystem::path& a,
                                         const std::filesystem::path& b);

}  // namespace strata::train
