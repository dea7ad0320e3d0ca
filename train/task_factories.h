#pragma once
// The per-model constructors behind make_task (train/task.h), and the checkpoint-field helpers
// they share. Internal to train/.
#include <memory>

#include "train/task.h"

namespace strata::train {

std::unique_ptr<Task> make_decoder_task(models::DecoderConfig cfg, const ObjectiveSpec& objective,
                                        const data::Tokenizer& tokenizer, uint64_t seed,
                                        const TaskPlacement& placement = {});
std::unique_ptr<Task> make_bert_task(models::BertConfig cfg, const ObjectiveSpec& objective,
                                     const data::Tokenizer& tokenizer, uint64_t seed,
                                     const TaskPlacement& placement = {});
std::unique_ptr<Task> make_t5_task(models::T5Config cfg, const ObjectiveSpec& objective,
                                   const data::Tokenizer& tokenizer, uint64_t seed,
                                   const TaskPlacement& placement = {});

// The error every task's whole-model methods raise when it holds one pipeline stage.
[[noreturn]] void fail_pipelined(std::string_view kind, std::string_view what);

models::DecoderConfig read_decoder_config(const CheckpointState& s);
models::BertConfig read_bert_config(const CheckpointState& s);
models::T5Config read_t5_config(const CheckpointState& s);

// Checkpoint trainer-state fields by name, with an error naming a missing one.
int64_t state_int(const CheckpointState& s, const std::string& key);
double state_double(const CheckpointState& s, const std::string& key);

void write_objective_spec(const ObjectiveSpec& o, CheckpointState& s);
// "model.precision" (models/precision.h); a checkpoint written before mixed precision is f32.
void write_precision(const models::Precision& p, CheckpointState& s);
models::Precision read_precision(const CheckpointState& s);
ObjectiveSpec read_objective_spec(const CheckpointState& s);

// Ids as the text a tokenizer decodes, skipping ignore-index entries.
std::string decode_ids(const data::Tokenizer& tokenizer, const std::vector<int64_t>& ids);

}  // namespace strata::train
