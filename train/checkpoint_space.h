#pragma once
// Disk space for checkpoints (docs/checkpoints.md, "Disk space"), shared by the one-process
// writer (train/checkpoint.cpp) and the parallel one (train/parallel_checkpoint_save.cpp).
// A save that cannot fit must fail before HDF5 writes anything: HDF5 1.10 does not recover from
// a full disk in the middle of a file (a dataset whose close fails stays half-open), so the
// writers check the free space first, then reserve the file's bytes, and only then write.
// Internal to strata_train.
#include <cstdint>
#include <exception>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

namespace strata::train {
struct CheckpointState;
}

namespace strata::train::detail {

// What a checkpoint needs on disk.
struct SpaceNeed {
  uint64_t tensor_bytes = 0;  // the datasets' raw bytes
  uint64_t bytes = 0;         // an upper bound of the whole file: tensors plus HDF5's metadata
};

// `datasets` tensors of `tensor_bytes` in all, and trainer-state attributes (keys and values)
// of `state_bytes`.
SpaceNeed space_need(uint64_t tensor_bytes, uint64_t datasets, uint64_t state_bytes);
// The same for a one-process checkpoint.
SpaceNeed space_need(const CheckpointState& state);

// Throws strata::Error when the filesystem holding run_dir (or its nearest existing parent) has
// fewer than need.bytes available, naming the directory, the filesystem's mount point, the bytes
// needed and available, and what to do. `name` is the checkpoint ("step_000000004").
void check_space(const std::filesystem::path& run_dir, const std::string& name,
                 const SpaceNeed& need);

// Allocates need.bytes for `file` (the new, still small state.h5) without changing its size, so
// HDF5's writes land in space that is already the file's. Throws like check_space when the
// filesystem refuses (no space, quota); does nothing on filesystems that cannot preallocate.
void reserve_space(const std::filesystem::path& file, const std::filesystem::path& run_dir,
                   const std::string& name, const SpaceNeed& need);

// Gives back what reserve_space allocated beyond the end of the finished file.
void release_reserve(const std::filesystem::path& file);

// A save of `name` failed with `error` after begin_save: removes the temporary directory `tmp`
// (the previous checkpoints are untouched) and throws strata::Error with the cause, the
// directory, its filesystem and the space numbers.
[[noreturn]] void fail_save(const std::filesystem::path& run_dir, const std::filesystem::path& tmp,
                            const std::string& name, const SpaceNeed& need,
                            const std::exception& error);

// Tests only: `available` replaces the filesystem's free bytes in check_space and fail_save;
// reserve = false skips reserve_space. A default SpaceProbe restores the real behaviour.
struct SpaceProbe {
  std::function<std::optional<uint64_t>(const std::filesystem::path&)> available;
  bool reserve = true;
};
void set_space_probe_for_tests(SpaceProbe probe);

}  // namespace strata::train::detail
