#pragma once
// The concrete tokenizers behind load_tokenizer (data/tokenizer.cpp), one file each.
#include <cstdint>
#include <memory>
#include <string>

#include "data/tokenizer.h"

namespace strata::data {

std::unique_ptr<Tokenizer> make_byte_tokenizer(const std::string& file_bytes);
std::unique_ptr<Tokenizer> make_sentencepiece_tokenizer(const std::string& kind,
                                                        const std::string& style, int32_t sentinels,
                                                        std::string payload,
                                                        const std::string& file_bytes,
                                                        const std::string& what);

}  // namespace strata::data
