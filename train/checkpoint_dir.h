#pragma once
// The directory protocol of checkpoints (docs/checkpoints.md, "Guarantees"), shared by the
// one-process writer (train/checkpoint.cpp) and the parallel one (train/parallel_checkpoint.cpp):
// a checkpoint is written into a temporary sibling, made durable, marked DONE and only then
// renamed to step_<N>; afterwards old checkpoints and leftovers of killed saves are pruned.
// Internal to strata_train.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

namespace strata::train::detail {

inline constexpr const char* kStateFile = "state.h5";
inline constexpr const char* kDoneFile = "DONE";

// The temporary directory a save of checkpoint directory `name` writes into.
std::filesystem::path tmp_dir(const std::filesystem::path& run_dir, const std::string& name);

// Creates run_dir when missing (syncing its parent) and an empty temporary directory for the
// checkpoint directory `name` (replacing a leftover of an interrupted save); returns it.
std::filesystem::path begin_save(const std::filesystem::path& run_dir, const std::string& name);

// Makes tmp/state.h5 durable, then writes and syncs the DONE marker and syncs tmp: after this the
// temporary directory is a complete checkpoint that only lacks its name.
void seal(const std::filesystem::path& tmp, int64_t step);

// Renames tmp to run_dir/name (replacing an existing checkpoint atomically), syncs run_dir,
// then keeps only the newest `keep_last` complete checkpoints (never the new one; <= 0 keeps
// all) and deletes leftovers of interrupted saves. Returns the checkpoint directory.
std::filesystem::path publish_and_prune(const std::filesystem::path& run_dir,
                                        const std::filesystem::path& tmp, const std::string& name,
                                        int keep_last);

// step_ directories of run_dir, by ascending step.
std::vector<std::pair<int64_t, std::filesystem::path>> list_step_dirs(
    const std::filesystem::path& run_dir);

bool has_done(const std::filesystem::path& dir);

}  // namespace strata::train::detail
