#include "models/tp_lm_head.h"

#include "core/error.h"
#include "core/ops.h"
#include "parallel/tp_cross_entropy.h"
#include "parallel/tp_mappings.h"

namespace strata::models {

namespace {

Sharding vocab_split(int64_t d_model, int64_t vocab, const parallel::Communicator& tp) {
  STRATA_CHECK(vocab % tp.size() == 0, "ParallelLMHead: vocab ", vocab,
               " is not divisible by the tensor-parallel size ", tp.size(),
               "; pad the vocabulary to a multiple of ", tp.size());
  return Sharding::split({vocab, d_model}, 0, tp.rank(), tp.size(), "ParallelLMHead");
}

parallel::Communicator& tp_of(const std::shared_ptr<const VocabParallelEmbedding>& e) {
  STRATA_CHECK(e != nullptr, "ParallelLMHead: tied to a null embedding");
  return e->tp();
}

}  // namespace

ParallelLMHead::ParallelLMHead(int64_t d_model, int64_t vocab, Init init,
                               parallel::Communicator& tp)
    : LMHead("ParallelLMHead", vocab_split(d_model, vocab, tp), init), tp_(tp) {}

ParallelLMHead::ParallelLMHead(std::shared_ptr<const VocabParallelEmbedding> tied)
    : LMHead("ParallelLMHead", tied), tp_(tp_of(tied)) {}

Tensor ParallelLMHead::local_logits(const Tensor& h) const {
  // As LMHead: the matmul in the compute dtype, the logits (and so the loss) in f32.
  return loss_input(
      mixed_linear(precision(), parallel::copy_to_tp(h, tp_, "tp.lm_head_in"), weight()));
}

Tensor ParallelLMHead::gather_logits(const Tensor& local) const {
  return parallel::gather_from_tp(local, tp_, "tp.lm_head_logits");
}

Tensor ParallelLMHead::loss(const Tensor& local, const Tensor& targets,
                            const std::string& reduction) const {
  return parallel::vocab_parallel_cross_entropy(loss_input(local), targets, tp_, -100, 0.0,
                                                reduction);
}

}  // namespace strata::models
