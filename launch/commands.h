#pragma once
// The subcommands of `strata`, one file each. A new command (train, eval, generate, inspect, ...)
// is a new cmd_<name>.cpp defining its make_*_command() plus one line in main.cpp.
#include "launch/config.h"
#include "train/trainer.h"

namespace strata::launch {

Command make_prepare_command();
Command make_tokenizer_command();
Command make_inspect_command();
Command make_train_command();
Command make_generate_command();
Command make_finetune_command();
Command make_calibrate_command();

// Builds the tokenizer and shards a run expects from data.corpus when they are missing
// (data.prepare = auto). In an MPI job world rank 0 prepares while the others wait, and its
// failure is every rank's error.
void prepare_once(const Config& cfg, const train::TrainOptions& options);

}  // namespace strata::launch
