#pragma once
// `strata prepare`: text files and JSONL in, token shards out (see shards.h for the layout).
#include <cstdint>
#include <string>
#include <vector>

#include "data/shards.h"
#include "data/tokenizer.h"

namespace strata::data {

struct PrepareOptions {
  std::vector<std::string> inputs;  // files or directories
  std::string out;                  // output directory
  int threads = 0;                  // 0: the OpenMP default; the output does not depend on it
  int64_t shard_tokens = int64_t(1) << 27;
  int id_bytes = 0;  // 0: uint16 when the vocabulary fits, else uint32
  size_t chunk_bytes = size_t(1) << 20;
  bool progress = true;  // the progress bar and the report on stderr
};

// Streams every input through the tokenizer into shards; memory stays at a few chunks per
// thread. Returns the counts it also wrote to the manifest. Warnings (empty files, invalid UTF-8
// replaced, bad JSONL lines) are reported on stderr when options.progress is set.
ShardStats prepare(const PrepareOptions& options, const Tokenizer& tokenizer);

}  // namespace strata::data
