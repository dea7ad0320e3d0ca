#pragma once
// Crash-safe HDF5 checkpoints (docs/checkpoints.md). A checkpoint is the directory
// <run_dir>/step_<9-digit step>/ holding state.h5 and a DONE marker:
//   /model/<param name>            every parameter under its full dotted name, global shape
//   /optim/<param name>/<state>    optimizer state (exp_avg, exp_avg_sq, ...)
//   /train                         scalar int64 dataset (the format version) whose attributes are
//                                  the trainer state: step, counters, clock, seed, config, ...
// Every dataset carries a "checksum" attribute (train/checksum.h) of its raw bytes, and /train an
// "attrs_checksum" over all trainer-state attributes, so loading detects torn or rotten files.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include "core/tensor.h"

namespace strata::train {

inline constexpr int64_t kCheckpointFormatVersion = 1;

struct CheckpointState {
  std::map<std::string, Tensor> model;                         // param name -> tensor
  std::map<std::string, std::map<std::string, Tensor>> optim;  // param -> state name -> tensor
  // Trainer state. A key lives in exactly one map; "step" is filled in by save_checkpoint and
  // returned by load_checkpoint. Keys: letters, digits, '_', '.', '-'.
  std::map<std::string, std::string> strings;  // config (full INI), tokenizer_fingerprint, ...
  std::map<std::string, int64_t> ints;         // step, samples_consumed, loader counter, seed, ...
  std::map<std::string, double> doubles;       // clock seconds, ...
};

// "step_000000123".
std::string checkpoint_dir_name(int64_t step);

// Writes <run_dir>/step_<step>/ atomically (temporary sibling ".tmp-step_...", fsync of file and
// directories, DONE, rename), then deletes leftovers of interrupted saves and keeps the newest
// `keep_last` checkpoints that verify: corrupt ones are kept but not counted, the one just
// written and the newest one that verifies are never deleted (keep_last <= 0 keeps all;
// docs/checkpoints.md, "Retention"). A crash at any point leaves earlier checkpoints intact and
// never leaves a partial step_ directory. A checkpoint that does not fit on the filesystem, or
// any other write error, throws strata::Error naming the directory, its filesystem and the bytes
// needed and available, after removing the partial checkpoint ("Disk space"). Re-saving an
// existing step replaces it atomically. Returns the directory.
std::filesystem::path save_checkpoint(const std::filesystem::path& run_dir, int64_t step,
                                      const CheckpointState& state, int keep_last);

// Loads and verifies a checkpoint directory (DONE present, format version known, every checksum
// matches). Throws strata::Error naming the directory and the problem.
CheckpointState load_checkpoint(const std::filesystem::path& dir);

// Reads every dataset and checks its checksum without keeping the tensors (memory: one tensor
// at a time). Throws like load_checkpoint.
void verify_checkpoint(const std::filesystem::path& dir);

// `--resume auto`: the newest step_ directory in run_dir that verifies. Newer damaged or
// incomplete ones are skipped with a warning naming them and why: appended (one line each) to
// *warnings when given, printed to stderr otherwise. nullopt when none verifies (or no run_dir).
std::optional<std::filesystem::path> find_latest_checkpoint(const std::filesystem::path& run_dir,
                                                            std::string* warnings = nullptr);

// Human-readable listing for `strata inspect`: files, trainer state, and every tensor with its
// shape, dtype and checksum verdict. Never throws for a damaged checkpoint: the problems are part
// of the text and *ok (when given) says whether everything verified.
std::string describe_checkpoint(const std::filesystem::path& dir, bool* ok = nullptr);

}  // namespace strata::train
