#include "models/tp_embedding.h"

#include <vector>

#include "core/error.h"
#include "core/ops.h"
#include "parallel/tp_mappings.h"

namespace strata::models {

namespace {

Sharding vocab_split(int64_t vocab, int64_t dim, const parallel::Communicator& tp) {
  STRATA_CHECK(tp.size() >= 1 && vocab % tp.size() == 0, "VocabParallelEmbedding: vocab ", vocab,
               " is not divisible by the tensor-parallel size ", tp.size(),
               "; pad the vocabulary to a multiple of ", tp.size());
  return Sharding::split({vocab, dim}, 0, tp.rank(), tp.size(), "VocabParallelEmbedding");
}

}  // namespace

VocabParallelEmbedding::VocabParallelEmbedding(int64_t num_embeddings, int64_t dim, Init init,
                                               parallel::Communicator& tp)
    : Embedding("VocabParallelEmbedding", num_embeddings, dim, init,
                vocab_split(num_embeddings, dim, tp)),
      tp_(tp),
      start_(tp.rank() * (num_embeddings / tp.size())) {}

Tensor VocabParallelEmbedding::forward(const Tensor& ids) const {
  if (tp_.size() == 1) return Embedding::forward(ids);
  STRATA_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32,
               "VocabParallelEmbedding: ids must be integer, got ", dtype_name(ids.dtype()));
  const auto v = ids.to(DType::i64).contiguous().to_vector<int64_t>();
  const int64_t n = local_vocab();
  std::vector<int64_t> local(v.size());
  std::vector<bool> elsewhere(v.size());
  bool any_elsewhere = false;
  for (size_t i = 0; i < v.size(); ++i) {
    STRATA_CHECK(v[i] >= 0 && v[i] < num_embeddings(), "VocabParallelEmbedding: id ", v[i],
                 " is outside [0, ", num_embeddings(), ")");
    const int64_t l = v[i] - start_;
    elsewhere[i] = l < 0 || l >= n;
    local[i] = elsewhere[i] ? 0 : l;
    any_elsewhere = any_elsewhere || elsewhere[i];
  }
  Tensor e = embedding(weight(), from_vector(local, ids.shape()));
  // Rows held by another rank contribute zeros (and take no gradient) here.
  if (any_elsewhere) e = masked_fill(e, from_vector(elsewhere, ids.shape()).unsqueeze(-1), 0.0);
  return parallel::reduce_from_tp(e, tp_, "tp.embedding");
}

}  // namespace strata::models
