#include "models/embedding.h"

#include "core/error.h"
#include "core/ops.h"

namespace strata::models {

Embedding::Embedding(int64_t num_embeddings, int64_t dim, Init init)
    : Module("Embedding"),
      n_(num_embeddings),
      dim_(dim),
      weight_(register_parameter("weight", {num_embeddings, dim}, init)) {
  STRATA_CHECK(num_embeddings > 0 && dim > 0, "Embedding: sizes must be positive, got ",
               num_embeddings, " x ", dim);
}

Tensor Embedding::forward(const Tensor& ids) const {
  return embedding(weight_, ids);
}

}  // namespace strata::models
