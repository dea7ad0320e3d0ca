#pragma once
// What is inside a checkpoint's state.h5 (docs/checkpoints.md, "Layout"), shared by the
// one-process writer (train/checkpoint.cpp) and the parallel one (train/parallel_checkpoint.cpp):
// name rules, dataset checksums, the /train dataset with the trainer state, its manifest and
// attribute checksum, and opening a checkpoint with its header verified. Internal to strata_train.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/io/hdf5_file.h"
#include "core/tensor.h"

namespace strata::train::detail {

inline constexpr const char* kTrain = "/train";
inline constexpr const char* kCorruptHint =
    ": the file is corrupt; delete it or resume from an earlier checkpoint";

// Names become HDF5 path components and manifest tokens: letters, digits, '_', '.', '-', not "."
// or "..". `who` starts the message ("save_checkpoint").
void check_name(const char* who, const char* what, const std::string& name);

// The tensor itself when it is in host memory, else a host copy (same dtype and shape): what the
// writers store, so a checkpoint never depends on the device a run trained on.
Tensor on_host(const Tensor& t);

// mix64 of a tensor's raw bytes in row-major order: the "checksum" attribute of its dataset.
uint64_t tensor_hash(const Tensor& t);

// The trainer-state part of a checkpoint (CheckpointState's three maps).
struct TrainerState {
  const std::map<std::string, std::string>& strings;
  const std::map<std::string, int64_t>& ints;
  const std::map<std::string, double>& doubles;
};

// key -> "int" / "double" / "string", after checking names, reserved keys, a key given twice and
// ints["step"] against `step` ("step" is always present).
using AttrTypes = std::map<std::string, std::string>;
AttrTypes check_trainer_state(const char* who, int64_t step, const TrainerState& s);

// Writes /train (the format version, its checksum, the trainer-state attributes, the manifest and
// attrs_checksum). `manifest` holds the "tensor <path>" lines of every dataset, in the order
// they were written.
void write_train(io::H5File& f, int64_t step, const TrainerState& s, const AttrTypes& types,
                 std::string manifest);

template <class... Args>
[[noreturn]] void fail(const std::filesystem::path& dir, const Args&... args) {
  STRATA_FAIL("checkpoint '", dir.string(), "': ", args...);
}

struct Attr {
  std::string type;  // "int", "double", "string"
  std::string key;
};

// An open checkpoint whose header (marker, version, manifest, trainer state) has been verified.
struct Opened {
  io::H5File file;
  std::vector<std::string> tensors;  // dataset paths, in manifest order
  std::vector<Attr> attrs;
};

// Throws strata::Error naming the directory and the problem.
Opened open_verified(const std::filesystem::path& dir);

// Reads one dataset and checks its checksum; throws naming the dataset.
Tensor read_verified(const std::filesystem::path& dir, const io::H5File& f,
                     const std::string& path);

}  // namespace strata::train::detail
