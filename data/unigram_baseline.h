#pragma once
// The loss a model that ignores context would reach: the cross-entropy, in nats per token, of the
// validation tokens under the training split's unigram distribution (add-one smoothed over the
// vocabulary). A trained LM must go well below it; the trainer logs it at start-up so every run
// states its own reference.
#include <cstdint>

#include "data/documents.h"

namespace strata::data {

double unigram_cross_entropy(const TokenDocuments& train, const TokenDocuments& valid,
                             int32_t vocab_size);

}  // namespace strata::data
