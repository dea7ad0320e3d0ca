#pragma once
// Embedding: a [num_embeddings, dim] table looked up by integer ids.
#include <string>

#include "models/module.h"

namespace strata::models {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Init init);
  // ids (i32 or i64) [...] -> [..., dim]. Virtual for VocabParallelEmbedding.
  virtual Tensor forward(const Tensor& ids) const;
  // This process's table: all of it, or its rows under tensor parallelism.
  const Tensor& weight() const { return weight_; }
  int64_t num_embeddings() const { return n_; }  // global
  int64_t dim() const { return dim_; }

 protected:
  // For VocabParallelEmbedding: the table holds this slice of [num_embeddings, dim].
  Embedding(std::string type, int64_t num_embeddings, int64_t dim, Init init,
            const Sharding& split);

 private:
  int64_t n_, dim_;
  Tensor& weight_;
};

}  // namespace strata::models
