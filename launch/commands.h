#pragma once
// The subcommands of `strata`, one file each. A new command (train, eval, generate, inspect, ...)
// is a new cmd_<name>.cpp defining its make_*_command() plus one line in main.cpp.
#include "launch/config.h"

namespace strata::launch {

Command make_prepare_command();
Command make_tokenizer_command();
Command make_inspect_command();
Command make_train_command();
Command make_generate_command();
Command make_finetune_command();

}  // namespace strata::launch
