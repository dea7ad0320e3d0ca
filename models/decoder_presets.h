#pragma once
// Named decoder LM sizes, as bert_preset / t5_preset name BERT and T5 sizes.
#include <string>
#include <vector>

#include "models/decoder_lm.h"

namespace strata::models {

// "decoder-tiny" (tests: seconds), "decoder-small" (the default run: minutes on 2 cores; d 256,
// 4 layers, 4 heads, SwiGLU 1024), "decoder-gpt2-small" (d 768, 12 layers, 12 heads, SwiGLU 2048,
// tied head: GPT-2-small scale). vocab and max_seq stay 0 (the tokenizer's and the run's); throws
// naming the known presets for another name.
DecoderConfig decoder_preset(const std::string& name);
std::vector<std::string> decoder_preset_names();

}  // namespace strata::models
