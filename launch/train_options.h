#pragma once
// The options of `strata train` (and the model/objective part `strata finetune` shares): their
// declaration with defaults and help, and their translation into train::TrainOptions. Model keys
// override the preset named by model.preset only when set, so an INI file states what differs.
#include "launch/config.h"
#include "train/trainer.h"

namespace strata::launch {

void declare_train_options(po::options_description& o);
void declare_model_options(po::options_description& o);

// model.type, model.preset and the model.* keys set explicitly. Throws for a key that does not
// apply to the type (naming the types it applies to) and for an unknown preset.
train::ModelSpec model_spec(const Config& cfg);
train::ObjectiveSpec objective_spec(const Config& cfg);
train::TrainOptions train_options(const Config& cfg);

// The tokenizer style a model needs (bert: [MASK]/[CLS]/[SEP]; t5 and decoder: sentinels), and
// where the derived data paths live when data.tokenizer / data.train / data.valid are not set.
std::string tokenizer_style(const Config& cfg);
std::string default_data_dir(const Config& cfg);

}  // namespace strata::launch
