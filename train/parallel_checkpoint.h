#pragma once
// Checkpoints of parallel runs (docs/parallelism.md, "Checkpoints in parallel runs"). The files are
// exactly those of train/checkpoint.h: /model/<name> and /optim/<name>/<state> with the GLOBAL
// shape, /train with the trainer state, the same checksums, DONE marker and directory protocol,
// so load_checkpoint, `strata inspect` and h5py read them like any other checkpoint, and a
// checkpoint written in one DP x TP x PP layout (or by one process) loads in any other.
//
// Saving is collective over the world: every rank passes its local tensors with their Sharding,
// the ranks agree on the global datasets, and parallel HDF5 (MPI-IO, collective hyperslab writes)
// puts each slice at its place. A slice held by several ranks (data-parallel replicas, tensors
// replicated over the tensor-parallel group, tied weights on two pipeline stages) is written once,
// by the lowest world rank holding it. Checksums are those of the global tensors' bytes, the
// values the one-process writer stores. Loading is each rank reading its own slices for its own
// layout. Every error is raised on every rank alike (the message of the lowest failing rank).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/tensor.h"
#include "models/module.h"
#include "parallel/communicator.h"
#include "train/checkpoint.h"

namespace strata::train {

// One rank's slice of a global tensor.
struct ShardedTensor {
  Tensor local;               // shape sharding.local_shape(), any layout, on any device
  models::Sharding sharding;  // where `local` lies in the global tensor (replicated: all of it)
};

// A rank's part of a checkpoint. A tensor's name, global shape, dtype and split must agree on
// every rank that holds it; each of its `parts` slices must be held by at least one rank.
struct ShardedCheckpointState {
  std::map<std::string, ShardedTensor> model;
  std::map<std::string, std::map<std::string, ShardedTensor>> optim;  // state shaped like param
  // Trainer state as in CheckpointState; only world rank 0's is written (the others may leave
  // these empty).
  std::map<std::string, std::string> strings;
  std::map<std::string, int64_t> ints;
  std::map<std::string, double> doubles;
};

// Every rank passes the same options.
struct ParallelSaveOptions {
  int keep_last = 0;  // as save_checkpoint's keep_last (<= 0 keeps all)
  // Copies of a slice held by several ranks must be bitwise equal, since only one is written: a
  // difference (a replica that drifted) is an error naming the tensor and the ranks. Costs one
  // hash of every local tensor and two small all-reduces.
  bool check_replicas = true;
  // Tests only: called on every rank at named points of the save ("written": the data is in the
  // temporary file; "sealed": the temporary directory is complete, just before the rename). An
  // exception thrown there is a rank failing mid-save.
  std::function<void(std::string_view point)> fault_injection;
};

// Collective over `world` (topology.world(); a one-process Communicator writes serially).
// Writes <run_dir>/step_<step>/ with the guarantees of save_checkpoint: all ranks write the
// temporary file, then world rank 0 adds the checksums and the trainer state, syncs, writes DONE
// and renames; a rank failing or dying before the rename leaves the previous checkpoints as they
// were. Returns the directory on every rank.
std::filesystem::path save_sharded_checkpoint(const std::filesystem::path& run_dir, int64_t step,
                                              const ShardedCheckpointState& state,
                                              parallel::Communicator& world,
                                              const ParallelSaveOptions& options = {});

// What one rank needs from a checkpoint: names and the slice of each that its layout holds.
// Global shapes must match the file's; names the file lacks are an error.
struct ShardRequest {
  std::map<std::string, models::Sharding> model;
  std::map<std::string, std::map<std::string, models::Sharding>> optim;
};

// Collective over `world`. Each rank reads only its requested slices (stored dtype, local shape)
// into the model / optim maps of the result, with the full trainer state. With `verify` (the
// default) every dataset's checksum is checked, each dataset by one rank, so the job reads the
// checkpoint once in total besides the slices; pass false right after find_latest_checkpoint
// (world), which has just verified it.
CheckpointState load_sharded_checkpoint(const std::filesystem::path& dir,
                                        const ShardRequest& request, parallel::Communicator& world,
                                        bool verify = true);

// verify_checkpoint and find_latest_checkpoint for a parallel job: the datasets are shared out
// over the ranks, and every rank gets the same verdict (find_latest: rank 0 lists the run
// directory; warnings go to *warnings on every rank, or are printed once by rank 0).
void verify_checkpoint(const std::filesystem::path& dir, parallel::Communicator& world);
std::optional<std::filesystem::path> find_latest_checkpoint(const std::filesystem::path& run_dir,
                                                            parallel::Communicator& world,
                                                            std::string* warnings = nullptr);

// A module's parameters with their Sharding, for ShardedCheckpointState::model, and the matching
// request for loading them (Module::load_parameter takes the local slices).
std::map<std::string, ShardedTensor> sharded_parameters(const models::Module& m);
std::map<std::string, models::Sharding> parameter_shardings(const models::Module& m);

}  // namespace strata::train
