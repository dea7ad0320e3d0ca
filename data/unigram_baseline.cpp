#include "data/unigram_baseline.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"

namespace strata::data {

namespace {

// Calls f(id) for every token of the stream, reading it in bounded chunks.
template <class F>
void for_each_token(const TokenDocuments& docs, F&& f) {
  constexpr int64_t kChunk = 1 << 20;
  std::vector<int32_t> buf(static_cast<size_t>(kChunk));
  for (int64_t begin = 0; begin < docs.num_tokens(); begin += kChunk) {
    const int64_t end = std::min(begin + kChunk, docs.num_tokens());
    docs.read(begin, end, buf.data());
    for (int64_t i = 0; i < end - begin; ++i) f(buf[size_t(i)]);
  }
}

}  // namespace

double unigram_cross_entropy(const TokenDocuments& train, const TokenDocuments& valid,
                             int32_t vocab_size) {
  STRATA_CHECK(vocab_size > 0 && valid.num_tokens() > 0,
               "unigram_cross_entropy: needs a vocabulary and validation tokens");
  std::vector<double> counts(size_t(vocab_size), 1.0);  // add-one smoothing
  double total = double(vocab_size);
  for_each_token(train, [&](int32_t id) {
    STRATA_CHECK(id >= 0 && id < vocab_size, "unigram_cross_entropy: token ", id,
                 " outside the vocabulary of ", vocab_size);
    counts[size_t(id)] += 1.0;
    total += 1.0;
  });
  double nll = 0;
  for_each_token(valid, [&](int32_t id) {
    STRATA_CHECK(id >= 0 && id < vocab_size, "unigram_cross_entropy: token ", id,
                 " outside the vocabulary of ", vocab_size);
    nll -= std::log(counts[size_t(id)] / total);
  });
  return nll / double(valid.num_tokens());
}

}  // namespace strata::data
