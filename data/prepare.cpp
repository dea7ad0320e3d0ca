#include "data/prepare.h"

#include <omp.h>

#include <cstdio>

#include "core/error.h"
#include "data/file_util.h"
#include "data/progress.h"

namespace strata::data {

ShardStats prepare(const PrepareOptions& o, const Tokenizer& tokenizer) {
  STRATA_CHECK(!o.inputs.empty(), "prepare: no --input given");
  STRATA_CHECK(!o.out.empty(), "prepare: no --out directory given");
  TextInput input(expand_inputs(o.inputs), o.chunk_bytes);
  ShardWriter writer(o.out, tokenizer.fingerprint(), tokenizer.vocab_size(), o.shard_tokens,
                     o.id_bytes);
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
  ProgressBar bar("prepare", input.total_bytes(), o.progress);

  // Pieces are read in order, encoded in parallel and written in order, so the shards are the
  // same for any thread count.
  struct Piece {
    std::string text;
    bool starts = false;
    std::vector<int32_t> ids;
  };
  // A batch holds about 4 chunks per thread, so each parallel region has enough work to pay for
  // waking the threads (many small files would otherwise make 2 threads slower than 1).
  const size_t batch_bytes = size_t(threads) * 4 * o.chunk_bytes;
  std::vector<Piece> batch;
  bool more = true;
  while (more) {
    size_t n = 0, bytes = 0;
    while (bytes < batch_bytes && n < 4096) {
      if (batch.size() <= n) batch.emplace_back();
      if (!(more = input.next(batch[n].text, batch[n].starts))) break;
      bytes += batch[n++].text.size();
    }
#pragma omp parallel for num_threads(threads) schedule(dynamic, 1) if (n > 1)
    for (size_t i = 0; i < n; ++i) batch[i].ids = tokenizer.encode(batch[i].text);
    for (size_t i = 0; i < n; ++i) {
      if (batch[i].starts) writer.begin_document();
      writer.append(batch[i].ids.data(), batch[i].ids.size());
    }
    bar.update(input.bytes_read());
  }
  ShardStats stats;
  stats.input_bytes = input.bytes_read();
  stats.invalid_utf8 = input.invalid_utf8();
  stats.bad_json_lines = input.bad_json_lines();
  stats.empty_files = input.empty_files();
  if (o.progress) {
    for (const auto& w : input.warnings())
      std::fprintf(stderr, "prepare: warning: %s\n", w.c_str());
    if (stats.invalid_utf8)
      std::fprintf(stderr, "prepare: warning: replaced %llu invalid UTF-8 sequences with U+FFFD\n",
                   (unsigned long long)stats.invalid_utf8);
    if (stats.bad_json_lines)
      std::fprintf(stderr, "prepare: warning: skipped %llu JSONL lines without a \"text\" string\n",
                   (unsigned long long)stats.bad_json_lines);
  }
  STRATA_CHECK(writer.documents() > 0, "prepare: the inputs hold no text (", input.empty_files(),
               " empty files, ", input.bad_json_lines(), " unusable JSONL lines)");
  writer.finish(stats);
  stats.documents = writer.documents();
  stats.tokens = writer.tokens();
  bar.finish(input.bytes_read());
  if (o.progress)
    std::fprintf(stderr, "prepare: %llu documents, %llu tokens (%s of text) -> %s\n",
                 (unsigned long long)stats.documents, (unsigned long long)stats.tokens,
                 human_bytes(double(stats.input_bytes)).c_str(), o.out.c_str());
  return stats;
}

}  // namespace strata::data
