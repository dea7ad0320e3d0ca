#pragma once
// The trainer's checkpoint glue, internal to train/: what a checkpoint holds besides the
// tensors, and saving / resuming the model and optimizer in one process (train/checkpoint.h) or
// in a parallel job (train/parallel_checkpoint.h, every layout writing the same global file).
#include <filesystem>
#include <optional>
#include <string>

#include "optim/clock.h"
#include "optim/optimizer.h"
#include "parallel/topology.h"
#include "train/trainer.h"

namespace strata::train {

// The trainer state of a checkpoint (no tensors): counters, clock, seed, config, tokenizer, and
// the task's model description.
CheckpointState trainer_state(Task& task, const optim::Optimizer& opt, const optim::Clock& clock,
                              uint64_t loader_counter, const TrainOptions& o,
                              const std::string& fingerprint);

// Saves model, optimizer and `state` as <run_dir>/step_<step>/. One process: save_checkpoint;
// otherwise collective over the world, each rank giving its shards (the same file either way).
std::filesystem::path save_training_checkpoint(const std::filesystem::path& run_dir, int64_t step,
                                               models::Module& model, const optim::Optimizer& opt,
                                               CheckpointState state, int keep_last,
                                               const parallel::Topology& topology);

// The checkpoint to resume from (`resume`: auto, none, or a directory), agreed by every rank.
std::optional<std::filesystem::path> resume_source(const std::string& resume,
                                                   const std::filesystem::path& run_dir,
                                                   const parallel::Topology& topology);

// Reads the checkpoint (this rank's slices of it in a parallel job), checks that it fits this
// run, and loads model, optimizer and clock. Returns its trainer state. `verified`: the
// checksums were just checked (resume auto), so a parallel job skips checking them again.
CheckpointState load_training_checkpoint(const std::filesystem::path& dir, models::Module& model,
                                         optim::Optimizer& opt, optim::Clock& clock,
                                         const std::string& fingerprint,
                                         std::string_view expected_kind,
                                         const parallel::Topology& topology, bool verified);

}  // namespace strata::train
