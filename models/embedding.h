#pragma once
// Embedding: a [num_embeddings, dim] table looked up by integer ids.
#include "models/module.h"

namespace strata::models {

class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, Init init);
  // ids (i32 or i64) [...] -> [..., dim]
  Tensor forward(const Tensor& ids) const;
  const Tensor& weight() const { return weight_; }
  int64_t num_embeddings() const { return n_; }
  int64_t dim() const { return dim_; }

 private:
  int64_t n_, dim_;
  Tensor& weight_;
};

}  // namespace strata::models
