#pragma once
// The directory protocol of checkpoints (docs/checkpoints.md, "Guarantees"), shared by the
// one-process writer (train/checkpoint.cpp) and the parallel one (train/parallel_checkpoint.cpp):
// a checkpoint is written into a temporary sibling, made durable, marked DONE and only then
// renamed to step_<N>; afterwards old checkpoints and leftovers of killed saves are pruned.
// Retention keeps the newest `keep_last` checkpoints that verify (docs/checkpoints.md,
// "Retention"). Internal to strata_train.
#include <cstdint>
#include <filesystem>
#include <optional>
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
// deletes leftovers of interrupted saves, then applies retention: walking from the newest
// step_ directory down, it counts the checkpoints that verify (the new one counts without being
// read) until `keep_last` are counted, and deletes the complete checkpoints below that point
// (never the new one). A complete checkpoint that does not verify is kept but not counted, so
// the newest one that verifies is never deleted; keep_last <= 0 keeps all. Only checkpoints
// this process has not judged yet are verified (see record_verdict). Returns the directory.
std::filesystem::path publish_and_prune(const std::filesystem::path& run_dir,
                                        const std::filesystem::path& tmp, const std::string& name,
                                        int keep_last);

// step_ directories of run_dir, by ascending step.
std::vector<std::pair<int64_t, std::filesystem::path>> list_step_dirs(
    const std::filesystem::path& run_dir);

bool has_done(const std::filesystem::path& dir);

// Verdicts of this process on checkpoint directories (verified by verify_checkpoint,
// load_checkpoint or find_latest_checkpoint, or written by this process), so retention reads a
// checkpoint at most once per process. A verdict holds while the directory's state.h5 and DONE
// are the same files with the same size and times; a checkpoint rewritten or damaged since is
// judged anew.
void record_verdict(const std::filesystem::path& dir, bool good);
std::optional<bool> known_verdict(const std::filesystem::path& dir);
// How many checkpoints retention has verified in this process (tests: its cost).
int64_t retention_verifications();

}  // namespace strata::train::detail
