#include "models/embedding.h"

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, Init init)
    : Embedding("Embedding", num_embeddings, dim, init,
                Sharding::replicated({num_embeddings, dim})) {}

Embedding::Embedding(std::string type, int64_t num_embeddings, int64_t dim, Init init,
                     const Sharding& split)
    : Module(std::move(type)),
      n_(num_embeddings),
      dim_(dim),
      weight_(register_sharded_parameter("weight", split, init)) {
  STRATA_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ",
               num_embeddings, " x ", dim);
}

Tensor Embedding::forward(const Tensor& ids) const {
  return embedding(weight_, ids);
}

}  // namespace strata::models
