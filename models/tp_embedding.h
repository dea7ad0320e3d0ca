#pragma once
// Megatron's vocab-parallel embedding: rank r of a tensor-parallel group holds rows
// [r * V/tp, (r+1) * V/tp) of the [V, dim] table. Each rank looks up the ids it holds, writes
// zeros for the others, and one all-reduce assembles the full (replicated) embeddings. The
// table carries its global shape and split, initialises to exactly its rows of the
// single-process Embedding's numbers, and can be tied to a ParallelLMHead.
#include "models/embedding.h"
#include "parallel/communicator.h"

namespace strata::models {

class VocabParallelEmbedding : public Embedding {
 public:
  // Throws unless tp.size() divides num_embeddings (the message names the vocab and tp).
  VocabParallelEmbedding(int64_t num_embeddings, int64_t dim, Init init,
                         parallel::Communicator& tp);
  // ids (i32 or i64, global ids, the same on every rank) [...] -> [..., dim], replicated.
  Tensor forward(const Tensor& ids) const override;
  int64_t vocab_start() const { return start_; }  // first global id held here
  int64_t local_vocab() const { return num_embeddings() / tp_.size(); }
  parallel::Communicator& tp() const { return tp_; }

 private:
  parallel::Communicator& tp_;
  int64_t start_;
};

}  // namespace strata::models
